package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLaneConnectionsShareNothing: the lane serves connection after
// connection with the same goroutines and connection state (server.work,
// laneConns); what one client sent never shows in the next one's request,
// and a connection that stays silent is closed at its own header timeout,
// whatever the one before it did.
func TestLaneConnectionsShareNothing(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s xff=%q ua=%q", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("User-Agent"))
	})
	p := newProxy(backend(t, echo))
	headerTimeout := 300 * time.Millisecond
	base := serveWith(t, p, &http.Server{Handler: handler(p), ReadHeaderTimeout: headerTimeout})
	addr := strings.TrimPrefix(base, "http://")

	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				n := w*100 + i
				extra := ""
				if n%2 == 1 {
					extra = fmt.Sprintf("X-Forwarded-For: 10.0.0.%d\r\nUser-Agent: odd-%d\r\n", n%250, n)
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				fmt.Fprintf(c, "GET /k%d HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n", n, extra)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					c.Close()
					errs <- fmt.Errorf("connection %d: %w", n, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				c.Close()
				want := fmt.Sprintf(`GET /k%d xff="127.0.0.1" ua=""`, n)
				if n%2 == 1 {
					want = fmt.Sprintf(`GET /k%d xff="10.0.0.%d, 127.0.0.1" ua="odd-%d"`, n, n%250, n)
				}
				if string(body) != want {
					errs <- fmt.Errorf("connection %d got %q, want %q", n, body, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// After all that reuse, a silent connection still gets its own timeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF || time.Since(start) < headerTimeout/2 {
		t.Errorf("a silent connection: %v after %s; want it closed after about %s", err, time.Since(start), headerTimeout)
	}
}

// TestShutdownLeavesNoGoroutine: the goroutines that wait for the next
// connection end with the server, as one per connection would.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	b := backend(t, echoPath)
	before := runtime.NumGoroutine()
	p := newProxy(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln, &http.Server{Handler: handler(p)}) }()
	tr := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get("http://" + ln.Addr().String() + "/k")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	tr.CloseIdleConnections()
	n := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= before {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Errorf("%d goroutines after Shutdown, %d before Serve:\n%s", n, before, buf[:runtime.Stack(buf, true)])
}
