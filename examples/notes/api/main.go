// Command api is the front service of the notes app: it keeps no data, and
// reads and writes each notebook through the store service, which it
// reaches by name. It is one of the two main packages that kiln.hcl
// assembles into one app; run alone (go run ./examples/notes/api) it
// stops at once, since its app has no store.
package main

import (
	"io"
	"net/http"
	"os"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	app := sdk.NewApp("notes")
	store := app.Dial("store")
	// NOTES_TITLE comes from the env the descriptor gives this service.
	title := os.Getenv("NOTES_TITLE")
	mux := http.NewServeMux()
	relay := func(w http.ResponseWriter, r *http.Request) {
		req, err := store.NewRequest(r.Context(), r.Method, "/notes/"+r.PathValue("book"), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := store.Do(req)
		if err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Notes-Title", title)
		w.Header().Set("Notes-Store-Shard", resp.Header.Get(patterns.HeaderBackend))
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
	mux.HandleFunc("GET /notes/{book}", relay)
	mux.HandleFunc("POST /notes/{book}", relay)
	app.Service(spec.Service{Name: "api", Simple: &spec.Simple{Replicas: 2}}, mux)
	app.Run()
}
