// Command kv is the shard pattern: an in-memory key-value store split over
// three shards. The router sends /kv/{key} to the shard that owns key.
package main

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

// store is one shard's share of the keys.
type store struct {
	mu   sync.RWMutex
	data map[string][]byte
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	switch r.Method {
	case http.MethodGet:
		s.mu.RLock()
		v, ok := s.data[key]
		s.mu.RUnlock()
		if !ok {
			http.Error(w, "no such key: "+key, http.StatusNotFound)
			return
		}
		w.Write(v)
	case http.MethodPut:
		v, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		s.mu.Lock()
		s.data[key] = v
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.data, key)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func main() {
	// KV_SHARDS changes the shard count, to watch consistent hashing move
	// only about 1/N of the keys.
	shards := 3
	if n, err := strconv.Atoi(os.Getenv("KV_SHARDS")); err == nil {
		shards = n
	}
	mux := http.NewServeMux()
	mux.Handle("/kv/{key}", &store{data: map[string][]byte{}})
	sdk.Run(spec.Service{
		Name:  "kv",
		Shard: &spec.Shard{Shards: shards, Key: spec.Key{PathSegment: 2}},
	}, mux)
}
