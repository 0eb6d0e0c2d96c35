// Command locker is a test program of sdk.Lock: three replicas that take
// the lease "l" on request, and record each acquisition and release in the
// file events under $DIR.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

var mu sync.Mutex

// record appends one line to the shared events file; O_APPEND keeps each
// line whole among processes.
func record(event string, token uint64) {
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(filepath.Join(os.Getenv("DIR"), "events"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %d %d %d\n", event, os.Getpid(), token, time.Now().UnixNano())
}

func main() {
	mux := http.NewServeMux()
	// POST /lock?hold=D takes the lease, holds it for D, and answers its
	// token once it released it.
	mux.HandleFunc("POST /lock", func(w http.ResponseWriter, r *http.Request) {
		hold, err := time.ParseDuration(r.URL.Query().Get("hold"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l, err := sdk.Lock(context.Background(), "l")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		record("acquire", l.Token())
		select {
		case <-time.After(hold):
		case <-l.Context().Done():
		}
		record("release", l.Token())
		l.Release()
		fmt.Fprintln(w, strconv.FormatUint(l.Token(), 10))
	})
	// /lock/NAME takes a lease the service does not declare.
	mux.HandleFunc("POST /lock/{name}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := sdk.Lock(r.Context(), r.PathValue("name")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	sdk.Run(spec.Service{
		Name:   "locker",
		Simple: &spec.Simple{Replicas: 3},
		Leases: []spec.Lease{{Name: "l", Duration: spec.Duration(2 * time.Second)}},
	}, mux)
}
