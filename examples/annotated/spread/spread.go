// Package spread is examples/spread written with //kiln: annotations.
package spread

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/sdk"
)

// New answers which replica served; ?ms=N simulates N ms of work, so load
// differences show.
//
//kiln:service spread spread replicas=4 choice=two-choices
func New() http.Handler {
	self := sdk.Self()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && ms > 0 {
			time.Sleep(time.Duration(min(ms, 10_000)) * time.Millisecond)
		}
		fmt.Fprintf(w, "served by replica %d\n", self.Index)
	})
}
