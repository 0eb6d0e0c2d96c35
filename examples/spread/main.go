// Command spread is the spread pattern: four replicas, and each request goes
// to the less loaded of two replicas picked at random.
package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	self := sdk.Self()
	sdk.Run(spec.Service{
		Name:   "spread",
		Spread: &spec.Spread{Replicas: 4, Choice: spec.ChoiceTwoChoices},
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ?ms=N simulates N milliseconds of work, so load differences show.
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && ms > 0 {
			time.Sleep(time.Duration(min(ms, 10_000)) * time.Millisecond)
		}
		fmt.Fprintf(w, "served by replica %d\n", self.Index)
	}))
}
