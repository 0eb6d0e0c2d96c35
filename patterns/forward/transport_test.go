package forward

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// drainingBackend answers on every connection until drain is called; from
// then on a request on a connection it had answered on is closed without
// an answer, as a server shutting down closes an idle connection the
// instant a request arrives on it. New connections are answered. It
// counts the requests it answered, by method and path.
type drainingBackend struct {
	mu       sync.Mutex
	old      map[net.Conn]bool
	draining bool
	answered map[string]int
	arrived  chan struct{} // one per request before drain
	hold     chan struct{} // closed to let those requests be answered
}

func newDrainingBackend(t *testing.T) (*drainingBackend, string) {
	b := &drainingBackend{old: map[net.Conn]bool{}, answered: map[string]int{},
		arrived: make(chan struct{}, 64), hold: make(chan struct{})}
	u := rawServer(t, func(req *http.Request, c net.Conn) {
		b.mu.Lock()
		if b.draining && b.old[c] {
			b.mu.Unlock()
			c.Close()
			return
		}
		warm := !b.draining
		b.old[c] = true
		b.answered[req.Method+" "+req.URL.Path]++
		b.mu.Unlock()
		if warm {
			b.arrived <- struct{}{}
			<-b.hold
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	return b, u.String()
}

func (b *drainingBackend) drain() {
	b.mu.Lock()
	b.draining = true
	b.mu.Unlock()
}

func (b *drainingBackend) count(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered[key]
}

// TestTransportSendsAGetAgainPastEveryConnectionADrainingBackendCloses:
// a backend that drains (a scatter/gather root's leaf, or a service an
// sdk.Conn calls, being replaced) closes each of its kept-alive
// connections as a request arrives on it. A GET goes again past every one
// of them, on a new connection, and gets its answer; a bodyless POST,
// which the backend might have acted on, fails instead of going twice.
func TestTransportSendsAGetAgainPastEveryConnectionADrainingBackendCloses(t *testing.T) {
	const conns = 8
	b, base := newDrainingBackend(t)
	client := &http.Client{Transport: NewTransport()}
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			resp, err := client.Get(base + "/warm")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	for range conns {
		<-b.arrived
	}
	close(b.hold)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	b.drain()

	resp, err := client.Get(base + "/after")
	if err != nil {
		t.Fatalf("GET /after, with %d kept-alive connections the backend closes: %v", conns, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("GET /after = %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	if n := b.count("GET /after"); n != 1 {
		t.Errorf("GET /after answered %d times, want once", n)
	}

	// The GET used up some of the old connections; warm the pool again.
	b2, base2 := newDrainingBackend(t)
	close(b2.hold)
	resp, err = client.Get(base2 + "/warm")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-b2.arrived
	b2.drain()
	resp, err = client.Post(base2+"/once", "", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("bodyless POST on a connection closed under it = %d, want an error", resp.StatusCode)
	}
	if n := b2.count("POST /once"); n != 0 {
		t.Errorf("bodyless POST answered %d times after its connection closed under it, want never", n)
	}
}
