// Package shard is a key-value store split over three shards, and a
// session store keyed by a header whose router runs beside kv.
package shard

import (
	"io"
	nethttp "net/http"
	"sync"
)

// NewKV is one shard of the store: /kv/{key} holds a value.
//
//kiln:service kv shard shards=3 key=path:2
func NewKV() nethttp.Handler {
	var mu sync.Mutex
	data := map[string][]byte{}
	mux := nethttp.NewServeMux()
	mux.HandleFunc("GET /kv/{key}", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(data[r.PathValue("key")])
	})
	mux.HandleFunc("PUT /kv/{key}", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		data[r.PathValue("key")] = b
	})
	return mux
}

// NewSessions holds sessions, sharded by the session header.
//
//kiln:service sessions shard shards=2 key=header:X-Session ambassador=kv port=9000
func NewSessions() nethttp.Handler {
	return nethttp.NotFoundHandler()
}
