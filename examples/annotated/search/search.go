// Package search is examples/search written with //kiln: annotations: four
// leaves each hold a quarter of a word list, and the root concatenates
// their matches, leaving out a leaf that fails or is late.
package search

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/kiln-dev/kiln/sdk"
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

// New is one leaf: GET /search?q= answers its words that start with q.
//
//kiln:service search scatter leaves=4 gather=concat timeout=500ms on-leaf-error=partial
func New() http.Handler {
	self := sdk.Self()
	var mine []string
	for i, w := range strings.Fields(words) {
		if i%self.Count == self.Index {
			mine = append(mine, w)
		}
	}
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
	return mux
}
