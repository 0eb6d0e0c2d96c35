// Command search is the scatter/gather pattern: four leaves each hold a
// quarter of a word list, and the root asks all of them and concatenates
// their matches. A leaf that fails or is late is left out, and the answer's
// Kiln-Missing header names it.
package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

// words is the corpus; leaf i of n holds every word whose position is i
// modulo n.
const words = `alpha amber anchor apple arch arrow atlas autumn
badge bamboo banner basin beacon berry birch blossom bridge bronze
cabin cactus candle canyon carbon castle cedar chalk cherry cider
dawn delta desert dragon drift dune dusk
eagle echo ember engine falcon feather fern fjord flint forest fossil
galaxy garden garnet glacier granite grove harbor hazel heron horizon
iris island ivory jade jasmine juniper kernel kestrel lantern lemon lilac
maple marble meadow mirror moss nectar nebula oak ocean olive onyx orbit
pebble pepper pine planet prairie quartz quill raven reef river
saffron sage sierra silver spruce summit thistle thunder tide timber
umber valley velvet violet walnut willow winter zephyr zinc`

func shard(index, count int) []string {
	var mine []string
	for i, w := range strings.Fields(words) {
		if i%count == index {
			mine = append(mine, w)
		}
	}
	return mine
}

func main() {
	self := sdk.Self()
	mine := shard(self.Index, self.Count)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		q := strings.ToLower(r.URL.Query().Get("q"))
		matches := []string{}
		for _, word := range mine {
			if strings.HasPrefix(word, q) {
				matches = append(matches, word)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(matches)
	})
	sdk.Run(spec.Service{
		Name: "search",
		Scatter: &spec.Scatter{
			Leaves:      4,
			Gather:      spec.GatherConcat,
			Timeout:     spec.Duration(500 * time.Millisecond),
			OnLeafError: spec.OnLeafErrorPartial,
		},
	}, mux)
}
