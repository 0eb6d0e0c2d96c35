package patterns

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestPooledConnectionWithUnaskedBytesIsDropped: bytes a backend sends
// after an answer (a body on a HEAD answer, written separately, as naive
// servers do) never become the next request's answer, on either path.
func TestPooledConnectionWithUnaskedBytesIsDropped(t *testing.T) {
	for _, noLane := range []bool{false, true} {
		addr := acceptEach(t, func(c net.Conn) {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.Method == http.MethodHead {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n")
					time.Sleep(20 * time.Millisecond)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstale!")
					continue
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		opts := Options{Logger: quiet}
		if noLane {
			opts.Transport = NewTransport() // plain http.Transport, no lane
		}
		rt := startRouter(t, &spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{{Scheme: "http", Host: addr}}, opts)
		req, _ := http.NewRequest(http.MethodHead, rt.URL+"/a", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
		_, body := get(t, rt.URL+"/b")
		t.Logf("lane=%v: GET /b answered %q", !noLane, body)
		if body != "ok" {
			t.Errorf("lane=%v: GET /b got another request's bytes: %q", !noLane, body)
		}
	}
}
