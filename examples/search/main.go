// Command search is the scatter/gather pattern: four leaves each hold a
// quarter of a word list, and the root asks all of them and concatenates
// their matches. A leaf that fails or is late is left out, and the answer's
// Kiln-Missing header names it. The leaf is package
// examples/annotated/search's.
package main

import (
	"time"

	"github.com/kiln-dev/kiln/examples/annotated/search"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	sdk.Run(spec.Service{
		Name: "search",
		Scatter: &spec.Scatter{
			Leaves:      4,
			Gather:      spec.GatherConcat,
			Timeout:     spec.Duration(500 * time.Millisecond),
			OnLeafError: spec.OnLeafErrorPartial,
		},
	}, search.New())
}
