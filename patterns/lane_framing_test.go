package patterns

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

// TestLaneFramesWhatConnectionNames: a backend whose Connection header names
// Content-Length still gets its answers delimited for the client, who reads
// two answers on one connection, on both paths.
func TestLaneFramesWhatConnectionNames(t *testing.T) {
	addr := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/a" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello")
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
			}
		}
	})
	h, _ := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{{Scheme: "http", Host: addr}}, Options{Logger: quiet})
	lane := serve(t, h)
	ref := httptest.NewServer(h)
	defer ref.Close()
	for _, u := range []string{lane.URL, ref.URL} {
		answers := exchangeRaw(t, strings.TrimPrefix(u, "http://"), "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
		for i, want := range []string{"hello", "second"} {
			if body, _ := io.ReadAll(answers[i].Body); string(body) != want {
				t.Errorf("%s: answer %d is %q, want %q", u, i, body, want)
			}
		}
	}
}
