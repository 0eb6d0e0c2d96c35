// Package shop is examples/shop's three services written with //kiln:
// annotations: kiln run ./examples/annotated/shop runs the same app with no
// main to write, and examples/shop declares the same services with the SDK
// around these handlers.
//
//   - web (simple, 2 replicas): GET and PUT /cart/{user} go to carts, GET
//     /find?q= asks catalog, both reached by name.
//   - carts (shard, 3 shards keyed by user).
//   - catalog (scatter/gather, 4 leaves, concat, partial).
//
//kiln:app shop
package shop

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/sdk"
)

// HeaderCartShard tells a client of web which carts shard holds the cart.
const HeaderCartShard = "Shop-Cart-Shard"

// NewWeb is the front end: it forwards cart requests to carts and searches
// to catalog, and passes on what tells the client where its answer came
// from. Its parameters are the services it calls, reached by name.
//
//kiln:service web simple replicas=2
func NewWeb(carts, catalog *sdk.Conn) http.Handler {
	mux := http.NewServeMux()
	relay := func(w http.ResponseWriter, r *http.Request, to *sdk.Conn, path string) {
		req, err := to.NewRequest(r.Context(), r.Method, path, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		resp, err := to.Do(req)
		if err != nil {
			http.Error(w, to.Name()+": "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if to == carts {
			w.Header().Set(HeaderCartShard, resp.Header.Get(patterns.HeaderBackend))
		}
		if m := resp.Header.Get(patterns.HeaderMissing); m != "" {
			w.Header().Set(patterns.HeaderMissing, m)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
	mux.HandleFunc("GET /cart/{user}", func(w http.ResponseWriter, r *http.Request) {
		relay(w, r, carts, "/cart/"+r.PathValue("user"))
	})
	mux.HandleFunc("PUT /cart/{user}", func(w http.ResponseWriter, r *http.Request) {
		relay(w, r, carts, "/cart/"+r.PathValue("user"))
	})
	mux.HandleFunc("GET /find", func(w http.ResponseWriter, r *http.Request) {
		relay(w, r, catalog, "/find?"+url.Values{"q": {r.URL.Query().Get("q")}}.Encode())
	})
	return mux
}

// NewCarts is one shard of the cart store: each user's cart is the JSON
// array of items last PUT.
//
//kiln:service carts shard shards=3 key=path:2
func NewCarts() http.Handler {
	var mu sync.Mutex
	carts := map[string][]string{}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /cart/{user}", func(w http.ResponseWriter, r *http.Request) {
		var items []string
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&items); err != nil {
			http.Error(w, `a cart is a JSON array of item names, like ["tea","mug"]: `+err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		carts[r.PathValue("user")] = items
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /cart/{user}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		items, ok := carts[r.PathValue("user")]
		mu.Unlock()
		if !ok {
			http.Error(w, "no cart", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(items)
	})
	return mux
}

// Product is one entry of the catalog.
type Product struct {
	Name  string `json:"name"`
	Cents int    `json:"cents"`
}

// products is the catalog; leaf i of n holds every product whose position
// is i modulo n.
var products = []Product{
	{"black tea", 450}, {"green tea", 520}, {"teapot", 2900}, {"tea towel", 800},
	{"mug", 1200}, {"espresso cup", 900}, {"milk jug", 1500}, {"kettle", 3900},
	{"coffee beans", 1400}, {"coffee grinder", 4500}, {"filter papers", 300}, {"sugar bowl", 1100},
	{"oat biscuits", 350}, {"honey", 700}, {"lemon cake", 1800}, {"tray", 2200},
}

// NewCatalog is one leaf of the catalog: it answers the matches among its
// share of the products, as a JSON array.
//
//kiln:service catalog scatter leaves=4 gather=concat timeout=500ms on-leaf-error=partial
func NewCatalog() http.Handler {
	self := sdk.Self()
	var mine []Product
	for i, p := range products {
		if i%self.Count == self.Index {
			mine = append(mine, p)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /find", func(w http.ResponseWriter, r *http.Request) {
		q := strings.ToLower(r.URL.Query().Get("q"))
		found := []Product{}
		for _, p := range mine {
			if strings.Contains(p.Name, q) {
				found = append(found, p)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(found)
	})
	return mux
}
