package forward

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// restartable is a backend on a loopback address that can be stopped,
// its listener and connections closed, and started again on the same
// address, as a process being restarted is.
type restartable struct {
	t    *testing.T
	addr string
	h    http.Handler

	mu  sync.Mutex
	srv *http.Server
}

// newRestartable starts h on a loopback port until the test ends.
func newRestartable(t *testing.T, h http.Handler) *restartable {
	b := &restartable{t: t, addr: "127.0.0.1:0", h: h}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *restartable) url() *url.URL { return &url.URL{Scheme: "http", Host: b.addr} }

func (b *restartable) start() {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Errorf("listening on %s: %v", b.addr, err)
		return
	}
	srv := &http.Server{Handler: b.h}
	go srv.Serve(ln)
	b.mu.Lock()
	b.addr, b.srv = ln.Addr().String(), srv
	b.mu.Unlock()
}

func (b *restartable) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.srv.Close()
}

// TestBackendComingBackGetsTheRequests: requests that reach a backend
// while it restarts (nothing listens on its address for a while) wait for
// it and get its answers, bodies included, on the lane and on net/http's
// path, rather than a 502.
func TestBackendComingBackGetsTheRequests(t *testing.T) {
	for _, path := range []struct {
		name  string
		serve func(testing.TB, *Proxy) string
	}{{"lane", serve}, {"net/http", func(t testing.TB, p *Proxy) string { return reference(t, p) }}} {
		t.Run(path.name, func(t *testing.T) {
			b := newRestartable(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
			}))
			base := path.serve(t, newProxy(b.url()))
			// A connection kept from before the restart, which the
			// backend closes, is not the one the requests wait for.
			if resp, _ := fetch(t, base+"/k"); resp.StatusCode != 200 {
				t.Fatalf("GET before the restart: %d", resp.StatusCode)
			}
			b.stop()
			const down = 400 * time.Millisecond
			start := time.Now()
			time.AfterFunc(down, b.start)
			large := strings.Repeat("x", 1<<20)
			var wg sync.WaitGroup
			for _, req := range []struct{ method, body string }{{"GET", ""}, {"POST", "one"}, {"PUT", large}} {
				wg.Go(func() {
					r, _ := http.NewRequest(req.method, base+"/k", bytes.NewReader([]byte(req.body)))
					resp, err := http.DefaultClient.Do(r)
					if err != nil {
						t.Errorf("%s: %v", req.method, err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := req.method + " /k " + req.body; resp.StatusCode != 200 || string(b) != want {
						t.Errorf("%s while the backend restarts: %d %.60q, want 200 %.60q", req.method, resp.StatusCode, b, want)
					}
					if took := time.Since(start); took < down {
						t.Errorf("%s answered after %s, before the backend was back", req.method, took)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestBackendDownForGoodFailsFast: a backend still unreachable after the
// dialer's patience gets a 502 that says how long it was tried; the next
// requests fail at once rather than each waiting as long, and the first
// after it comes back gets its answer.
func TestBackendDownForGoodFailsFast(t *testing.T) {
	b := newRestartable(t, echoPath)
	b.stop()
	p := newProxy(b.url())
	p.init()
	p.pool.dialer.patience = 300 * time.Millisecond
	base := serve(t, p)

	start := time.Now()
	resp, body := fetch(t, base+"/k")
	took := time.Since(start)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "replica-0") || !strings.Contains(body, "dials in") {
		t.Fatalf("GET with the backend down: %d %q, want a 502 naming replica-0 and its dials", resp.StatusCode, body)
	}
	if took < p.pool.dialer.patience {
		t.Errorf("the first 502 came after %s, before the dialer's patience (%s) ran out", took, p.pool.dialer.patience)
	}
	for range 3 {
		start = time.Now()
		if resp, body = fetch(t, base+"/k"); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("GET with the backend still down: %d %q, want 502", resp.StatusCode, body)
		}
		if took := time.Since(start); took > p.pool.dialer.patience/2 {
			t.Errorf("a request to a backend known to be down took %s", took)
		}
	}
	b.start()
	if resp, body = fetch(t, base+"/k"); resp.StatusCode != 200 || body != "path /k" {
		t.Fatalf("GET once the backend is back: %d %q, want 200 \"path /k\"", resp.StatusCode, body)
	}
	if p.pool.dialer.wasDown(b.addr) {
		t.Error("the backend is still remembered as down after a dial to it succeeded")
	}
}
