// Package shop is an app of three services, each in a file of its own: web
// reaches carts and catalog by name.
package shop

import (
	"io"
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
)

// NewWeb forwards cart requests to carts and searches to catalog.
//
//kiln:app shop
//kiln:service web simple replicas=2 public
func NewWeb(carts, catalog *sdk.Conn) http.Handler {
	mux := http.NewServeMux()
	relay := func(w http.ResponseWriter, r *http.Request, to *sdk.Conn) {
		resp, err := to.Get(r.Context(), r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
	mux.HandleFunc("/cart/", func(w http.ResponseWriter, r *http.Request) { relay(w, r, carts) })
	mux.HandleFunc("/find", func(w http.ResponseWriter, r *http.Request) { relay(w, r, catalog) })
	return mux
}
