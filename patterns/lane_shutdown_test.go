package patterns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestServeGraceEndsQuietStreams: Serve returns soon after its grace
// period even while a connection relays a stream whose backend has gone
// quiet (server-sent events, a long poll), with the lane and without.
func TestServeGraceEndsQuietStreams(t *testing.T) {
	for _, lane := range []bool{true, false} {
		t.Run(fmt.Sprintf("lane=%v", lane), func(t *testing.T) {
			release := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "event 1\n")
				w.(http.Flusher).Flush()
				<-release // quiet for a long while
			}))
			defer backend.Close()
			defer close(release)
			u, _ := url.Parse(backend.URL)
			opts := Options{Logger: quiet}
			if !lane {
				opts.Transport = NewTransport()
			}
			h, err := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{u}, opts)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			grace := 300 * time.Millisecond
			go func() { served <- Serve(ctx, ln, h, grace) }()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "event 1\n" {
				t.Fatalf("first event %q", line)
			}
			start := time.Now()
			cancel()
			select {
			case err := <-served:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Serve: %v; want the grace period's end", err)
				}
			case <-time.After(grace + 2*time.Second):
				t.Fatalf("Serve still running %s after shutdown with a %s grace", time.Since(start), grace)
			}
		})
	}
}
