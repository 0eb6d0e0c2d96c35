package patterns

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestHopTransportDropsConnectionWithUnaskedBytes: the same, for the hop
// transport of the net/http path.
func TestHopTransportDropsConnectionWithUnaskedBytes(t *testing.T) {
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
	h, _ := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{{Scheme: "http", Host: addr}}, Options{Logger: quiet})
	ref := httptest.NewServer(h)
	defer ref.Close()
	req, _ := http.NewRequest(http.MethodHead, ref.URL+"/a", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond)
	_, body := get(t, ref.URL+"/b")
	if body != "ok" {
		t.Errorf("net/http path with hopTransport: GET /b answered %q", body)
	}
}
