package patterns

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// TestLaneRetrySendsOnlyWhatItParsed: a GET retried after the backend
// dropped it (past the watcher's 50 ms, so the client's next bytes were
// read meanwhile) is the request the lane parsed, not those bytes: nothing
// reaches the backend unparsed, and no other client gets its answer.
func TestLaneRetrySendsOnlyWhatItParsed(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow"):
			time.Sleep(120 * time.Millisecond)
			panic(http.ErrAbortHandler) // the backend drops the connection unanswered
		case r.URL.Path == "/smuggled":
			time.Sleep(30 * time.Millisecond)
			io.WriteString(w, "smuggled!")
		default:
			io.WriteString(w, "path "+r.URL.Path)
		}
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	rt := startRouter(t, &spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{u}, Options{Logger: quiet})
	addr := strings.TrimPrefix(rt.URL, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Warm the pool: the next request goes on a reused connection.
	io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)

	inj := "/ HTTP/1.1\r\nHost: b\r\n\r\nGET /smuggled HTTP/1.1\r\nX: "
	target := "/slow/" + strings.Repeat("A", len(inj)+10-len("/slow/"))
	pad := strings.Repeat("a", len(target)-len(inj))
	io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(80 * time.Millisecond) // the watcher is now in Peek(1)
	// Bytes that, as the lane reads them, are not even a complete request.
	io.WriteString(c, "XXXX"+inj+pad)

	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	t.Logf("attacker got %d %q", resp.StatusCode, body)

	// Another client.
	time.Sleep(60 * time.Millisecond)
	r2, b2 := get(t, rt.URL+"/victim")
	t.Logf("victim got %d %q", r2.StatusCode, b2)
	mu.Lock()
	t.Logf("backend saw: %q", seen)
	mu.Unlock()
	if b2 != "path /victim" {
		t.Errorf("the victim got another request's answer: %q", b2)
	}
	for _, s := range seen {
		if s == "GET /smuggled" {
			t.Errorf("the backend received a request the lane never parsed: %q", seen)
		}
	}
}
