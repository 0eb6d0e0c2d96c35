// Package scatter is two scatter/gather services: one concatenates its
// leaves' arrays, the other merges their objects.
package scatter

import (
	"encoding/json"
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
)

// NewSearch is one leaf of the word search.
//
//kiln:service search scatter leaves=4 gather=concat timeout=500ms on-leaf-error=partial
func NewSearch() http.Handler {
	self := sdk.Self()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]int{self.Index})
	})
}

// NewStats is one leaf of the statistics.
//
//kiln:service stats scatter leaves=2 gather=merge timeout=1500ms
func NewStats() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int{"leaf": sdk.Self().Index})
	})
}
