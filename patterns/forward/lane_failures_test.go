package forward

// Tests of how the lane behaves when clients, backends or shutdowns go
// wrong.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLaneFramesWhatConnectionNames: a backend whose Connection header names
// Content-Length still gets its answers delimited for the client, who reads
// two answers on one connection, on both paths.
func TestLaneFramesWhatConnectionNames(t *testing.T) {
	backend := rawServer(t, func(req *http.Request, c net.Conn) {
		if req.URL.Path == "/a" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello")
		} else {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
		}
	})
	p := newProxy(backend)
	for _, u := range []string{serve(t, p), reference(t, p)} {
		answers := exchangeRaw(t, strings.TrimPrefix(u, "http://"), "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
		for i, want := range []string{"hello", "second"} {
			if body, _ := io.ReadAll(answers[i].Body); string(body) != want {
				t.Errorf("%s: answer %d is %q, want %q", u, i, body, want)
			}
		}
	}
}

// TestPooledConnectionWithUnaskedBytesIsDropped: bytes a backend sends
// after an answer (a body on a HEAD or 204 answer, written separately, as
// naive servers do; or bytes past a Content-Length) never become the next
// request's answer, on any path. A connection whose last answer was
// framed is taken for open for trustIdle without looking at it, so the
// second case asks after that; one whose 204 answer came from a backend
// that never wrote after one is too, so the third case asks more times
// than it takes to trust a backend that does.
func TestPooledConnectionWithUnaskedBytesIsDropped(t *testing.T) {
	backend := rawServer(t, func(req *http.Request, c net.Conn) {
		switch {
		case req.Method == http.MethodHead:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n")
		case req.Method == http.MethodPut:
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		case req.URL.Path == "/framed":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nframed")
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstale!")
	})
	for _, tc := range []struct {
		name  string
		serve func(t *testing.T) string
	}{
		{"lane", func(t *testing.T) string { return serve(t, newProxy(backend)) }},
		{"net/http with the Proxy's transport", func(t *testing.T) string { return reference(t, newProxy(backend)) }},
		{"net/http with http.Transport", func(t *testing.T) string {
			p := newProxy(backend)
			p.Transport = newHTTPTransport()
			return serve(t, p)
		}},
	} {
		for _, first := range []struct {
			method, path string
			wait         time.Duration
			times        int
		}{
			{http.MethodHead, "/a", 50 * time.Millisecond, 1}, // within trustIdle: not framed, so looked at
			{http.MethodGet, "/framed", trustIdle + 100*time.Millisecond, 1},
			{http.MethodPut, "/nobody", 50 * time.Millisecond, bodilessTrust + 2},
		} {
			t.Run(tc.name+", after "+first.method+" "+first.path, func(t *testing.T) {
				base := tc.serve(t)
				for i := range first.times {
					req, _ := http.NewRequest(first.method, base+first.path, nil)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					time.Sleep(first.wait)
					if _, body := fetch(t, base+"/b"); body != "ok" {
						t.Errorf("GET /b, time %d, got another request's bytes: %q", i+1, body)
					}
				}
			})
		}
	}
}

// TestBackendThatStartsWritingAfter204sCostsOneAnswer: a backend whose
// 204 answers earned the lane's trust (nothing came after them) and then
// writes a body after one costs at most the next answer on that
// connection: from then on its connections are looked at again.
func TestBackendThatStartsWritingAfter204sCostsOneAnswer(t *testing.T) {
	var puts atomic.Int32
	backend := rawServer(t, func(req *http.Request, c net.Conn) {
		if req.Method != http.MethodPut {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		if puts.Add(1) > bodilessTrust+2 {
			time.Sleep(5 * time.Millisecond)
			io.WriteString(c, "saved\n")
		}
	})
	base := serve(t, newProxy(backend))
	lost := 0
	for i := range bodilessTrust + 6 {
		req, _ := http.NewRequest(http.MethodPut, base+"/nobody", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
		resp, body := fetch(t, base+"/b")
		switch {
		case body == "ok":
		case resp.StatusCode == http.StatusBadGateway && i == bodilessTrust+2:
			lost++ // the first answer after the backend changed its ways
		default:
			t.Errorf("GET /b after PUT %d = %d %q, want 200 \"ok\"", i+1, resp.StatusCode, body)
		}
	}
	t.Logf("answers lost: %d", lost)
}

// TestLaneSendsAGetAgainOnAConnectionClosedUnseen: a backend that drains
// closes its idle connections at once; GETs right after, on connections
// the lane takes for open without looking (trustIdle), all get their
// answer, and each reaches the backend once.
func TestLaneSendsAGetAgainOnAConnectionClosedUnseen(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	base := serve(t, newProxy(u))

	// Eight requests at once leave eight kept-alive connections.
	const conns = 8
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			// Not fetch: t.Fatal belongs to the test's own goroutine.
			resp, err := http.Get(base + "/slow")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	for {
		mu.Lock()
		n := seen["/slow"]
		mu.Unlock()
		if n == conns {
			break
		}
		if t.Failed() {
			close(release)
			wg.Wait()
			t.FailNow()
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	srv.CloseClientConnections()
	for i := range 2 * conns {
		path := fmt.Sprintf("/get-%d", i)
		if resp, body := fetch(t, base+path); resp.StatusCode != http.StatusOK || body != "ok "+path {
			t.Fatalf("GET %s after the backend closed its idle connections: %d %q", path, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range 2 * conns {
		if n := seen[fmt.Sprintf("/get-%d", i)]; n != 1 {
			t.Errorf("GET /get-%d reached the backend %d times, want once", i, n)
		}
	}
}

// TestLaneClientHangUpLeavesNoBrokenConnection: a client that hangs up
// while a slow backend answers (the watcher then cuts the backend
// connection) leaves no broken connection in the pool: the next request
// reaches the backend exactly once.
func TestLaneClientHangUpLeavesNoBrokenConnection(t *testing.T) {
	answer := make(chan struct{})
	var free atomic.Bool
	var twice atomic.Int64
	backend := rawServer(t, func(req *http.Request, c net.Conn) {
		if req.URL.Path == "/once" {
			twice.Add(1)
		}
		if !free.Load() {
			<-answer
		}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	base := serve(t, newProxy(backend))
	laddr := strings.TrimPrefix(base, "http://")
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
		if resp, _ := fetch(t, base+"/once"); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("iteration %d: GET /once answered %d", i, resp.StatusCode)
		}
		if n := twice.Load() - before; n != 1 {
			t.Fatalf("iteration %d: one GET /once reached the backend %d times", i, n)
		}
		free.Store(false)
	}
}

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
	base := serve(t, newProxy(u))
	addr := strings.TrimPrefix(base, "http://")

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
	r2, b2 := fetch(t, base+"/victim")
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

// TestLaneSurvivesAPanickingPick: a panic in Pick (a bug in a program's
// key function, say) ends that request's connection only, as it would on
// net/http; the Proxy goes on serving.
func TestLaneSurvivesAPanickingPick(t *testing.T) {
	p := newProxy(backend(t, echoPath))
	pick := p.Pick
	p.PickHeaders = true
	p.Pick = func(r *http.Request) (*Backend, error) {
		if r.Header.Get("X-Boom") != "" {
			var m map[string]int
			m["x"] = 1
		}
		return pick(r)
	}
	base := serve(t, p)
	req, _ := http.NewRequest("GET", base+"/a", nil)
	req.Header.Set("X-Boom", "1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a request whose Pick panicked got %d", resp.StatusCode)
	}
	if resp, body := fetch(t, base+"/b"); resp.StatusCode != 200 || body != "path /b" {
		t.Fatalf("the next request: %d %q", resp.StatusCode, body)
	}
}

// TestLaneFailedPickLeavesNoBodyBehind: a request Pick refuses gets its
// error answer whatever its body's size, and a body the lane did not read
// never passes for the connection's next request.
func TestLaneFailedPickLeavesNoBodyBehind(t *testing.T) {
	p := newProxy(backend(t, echoPath))
	pick := p.Pick
	p.Pick = func(r *http.Request) (*Backend, error) {
		if strings.HasPrefix(r.URL.Path, "/refused") {
			return nil, errors.New("no backend for this one")
		}
		return pick(r)
	}
	base := strings.TrimPrefix(serve(t, p), "http://")
	for _, size := range []int{1000, 30000, 200000} { // in the buffer, read whole, streamed
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
			body := strings.Repeat(smuggled, size/len(smuggled)+1)[:size]
			c, err := net.Dial("tcp", base)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			go fmt.Fprintf(c, "PUT /refused HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%sGET /next HTTP/1.1\r\nHost: h\r\n\r\n", size, body)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("refused request: %d, want 502", resp.StatusCode)
			}
			// Next comes /next's answer, or the end of the connection:
			// never an answer to what the body held.
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(got) != "path /next" {
				t.Fatalf("after the refused request: %d %q", resp.StatusCode, got)
			}
		})
	}
}

// TestLaneClosesSilentConnections: a connection that never sends a byte,
// or stops in the middle of its first head, is closed after the header
// timeout, as net/http closes it. The lane sets that deadline only once a
// read has to wait, so both kinds are tried: the bytes sent with the
// connection are usually read before any wait.
func TestLaneClosesSilentConnections(t *testing.T) {
	p := newProxy(backend(t, echoPath))
	headerTimeout := 200 * time.Millisecond
	base := serveWith(t, p, &http.Server{Handler: handler(p), ReadHeaderTimeout: headerTimeout})

	for _, sent := range []string{"", "GET /a HTTP/1.1\r\nHost: x\r\n"} {
		t.Run(fmt.Sprintf("%q", sent), func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, sent); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			start := time.Now()
			if got, err := io.ReadAll(c); err != nil || len(got) > 0 {
				t.Fatalf("a silent connection: %q, %v after %s; want it closed", got, err, time.Since(start))
			}
			// The timeout runs from the accept, a little before start.
			if took := time.Since(start); took < headerTimeout/2 {
				t.Fatalf("closed after %s, well before the header timeout", took)
			}
		})
	}
}

// TestLaneClientHangUpFreesASlowBackend: a client that hangs up while its
// backend takes its time to answer ends the wait, on a new backend
// connection and on a pooled one: the lane closes the backend's connection
// well before the answer would have come, and serves the next request.
func TestLaneClientHangUpFreesASlowBackend(t *testing.T) {
	closed := make(chan time.Duration, 4)
	u := rawServer(t, func(req *http.Request, c net.Conn) {
		if req.URL.Path != "/slow" {
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			return
		}
		// Answer after 10 s, unless the lane closes the connection first:
		// a read sees that.
		start := time.Now()
		c.SetReadDeadline(start.Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		closed <- time.Since(start)
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			c.SetReadDeadline(time.Time{})
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	p := newProxy(u)
	base := serve(t, p)
	for _, pooled := range []bool{false, true} {
		if pooled {
			// A quick answer leaves its connection in the pool for the
			// slow request.
			if resp, _ := fetch(t, base+"/quick"); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("GET /quick answered %d", resp.StatusCode)
			}
		}
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(150 * time.Millisecond) // past watchAfter
		c.Close()
		select {
		case d := <-closed:
			if d > 5*time.Second {
				t.Fatalf("pooled=%v: the backend's connection closed %v after the request, want at once after the client's hang-up", pooled, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("pooled=%v: the backend's connection is still open 5 s after the client hung up", pooled)
		}
		b, _ := p.Pick(lanePick("/any"))
		waitIdle(t, b)
	}
	if resp, _ := fetch(t, base+"/next"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the next request answered %d", resp.StatusCode)
	}
}
