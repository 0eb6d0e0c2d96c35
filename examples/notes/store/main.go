// Command store is the data service of the notes app: 2 shards, keyed by
// notebook; each shard appends the lines POSTed to a notebook and answers
// them all on GET.
package main

import (
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	var mu sync.Mutex
	books := map[string][]string{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes/{book}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		books[r.PathValue("book")] = append(books[r.PathValue("book")], strings.TrimRight(string(b), "\n"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /notes/{book}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lines, ok := books[r.PathValue("book")]
		mu.Unlock()
		if !ok {
			http.Error(w, "no such notebook", http.StatusNotFound)
			return
		}
		io.WriteString(w, strings.Join(lines, "\n")+"\n")
	})
	sdk.Run(spec.Service{
		Name:  "store",
		Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 2}},
	}, mux, sdk.AppName("notes"))
}
