// Package kv is examples/kv written with //kiln: annotations: an in-memory
// key-value store split over three shards, with no main to write.
package kv

import (
	"io"
	"net/http"
	"sync"
)

// New is one shard's share of the keys, served at /kv/{key}.
//
//kiln:service kv shard shards=3 key=path:2
func New() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/kv/{key}", &store{data: map[string][]byte{}})
	return mux
}

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
