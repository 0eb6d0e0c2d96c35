// Package hello is examples/hello written with //kiln: annotations: there
// is no main, and kiln run ./examples/annotated/hello runs the same
// topology.
package hello

import (
	"fmt"
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
)

// New greets; each replica says which one it is.
//
//kiln:service hello simple replicas=3
func New() http.Handler {
	self := sdk.Self()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "hello, %s, from replica %d\n", name, self.Index)
	})
}
