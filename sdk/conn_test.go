package sdk

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/patterns"
)

// TestConnWaitsForAServiceThatRefusesForAMoment: a POST to a service that
// refuses connections (not listening yet, or a cluster still programming
// its rules for a new pod) arrives, body and all, once the service
// listens, rather than failing the caller's request.
func TestConnWaitsForAServiceThatRefusesForAMoment(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the service starts below

	app := NewApp("notes")
	store := app.Dial("store")
	if err := app.resolve("notes", patterns.Discovery{{Service: "store", URL: "http://" + addr}}); err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + string(b)
		w.WriteHeader(http.StatusNoContent)
	})}
	t.Cleanup(func() { srv.Close() })
	time.AfterFunc(300*time.Millisecond, func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		go srv.Serve(ln)
	})

	// A body that cannot be rewound, as a handler relaying its own
	// request's body sends.
	body := io.MultiReader(strings.NewReader("eggs"))
	req, err := store.NewRequest(context.Background(), http.MethodPost, "/notes/shopping", body)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := store.Do(req)
	if err != nil {
		t.Fatalf("POST to a service that listens 300ms later: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("POST = %d, want 204", resp.StatusCode)
	}
	if g := <-got; g != "POST /notes/shopping eggs" {
		t.Errorf("service got %q, want POST /notes/shopping eggs", g)
	}
	t.Logf("answered after %s", time.Since(start).Round(time.Millisecond))
}
