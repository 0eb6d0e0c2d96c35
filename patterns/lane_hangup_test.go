package patterns

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestLaneClientHangUpLeavesNoBrokenConnection: a client that hangs up
// while a slow backend answers (the watcher then cuts the backend
// connection) leaves no broken connection in the pool: the next request
// reaches the backend exactly once.
func TestLaneClientHangUpLeavesNoBrokenConnection(t *testing.T) {
	answer := make(chan struct{})
	var free atomic.Bool
	var twice atomic.Int64
	addr := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/once" {
				twice.Add(1)
			}
			if !free.Load() {
				<-answer
			}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	h, err := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{{Scheme: "http", Host: addr}}, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rt := serve(t, h)
	laddr := strings.TrimPrefix(rt.URL, "http://")
	for i := range 30 {
		c, err := net.Dial("tcp", laddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(60 * time.Millisecond) // the watcher is in Peek(1)
		go func() { answer <- struct{}{} }()
		time.Sleep(time.Duration(i%30) * 5 * time.Microsecond)
		c.Close()
		time.Sleep(20 * time.Millisecond)
		// A request after the hang-up reaches the backend once: a pooled
		// connection left with the watcher's expired deadline would fail
		// it after the write and send it again.
		free.Store(true)
		before := twice.Load()
		if resp, _ := get(t, rt.URL+"/once"); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("iteration %d: GET /once answered %d", i, resp.StatusCode)
		}
		if n := twice.Load() - before; n != 1 {
			t.Fatalf("iteration %d: one GET /once reached the backend %d times", i, n)
		}
		free.Store(false)
	}
}
