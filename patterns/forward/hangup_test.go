package forward

// Tests of a client or a backend that hangs up in the middle of a body, on
// both paths: the lane (small bodies, any answer) and net/http (large
// bodies).

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitIdle waits until b serves no request, and fails the test if it still
// does after 5 s.
func waitIdle(t *testing.T, b *Backend) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.InFlight() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s.InFlight() = %d 5 s after its client hung up, want 0", b.Name, b.InFlight())
		}
	}
}

// TestClientHangsUpMidBody: a client that sends half its request body and
// hangs up gets nothing of it to a backend whole: the lane sends nothing of
// a body that fits its buffer or that it reads whole first (up to 64 KB),
// and one that streams (on the lane, or
// chunked on net/http's path) ends short. The Proxy frees the backend and
// serves the next request.
func TestClientHangsUpMidBody(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // by path: what the backend read of the body
	u := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = fmt.Sprintf("%d bytes, %v", len(body), err)
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	for _, tc := range []struct {
		name    string
		length  int
		chunked bool
		lane    uint64 // requests the lane forwards
	}{
		{"lane, a body in the buffer", 2000, false, 0},
		{"lane, a body read whole first", 30000, false, 0},
		{"lane, a body that streams", 100000, false, 1},
		{"net/http, a chunked body", 100000, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(u)
			base := serve(t, p)
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			path := "/put/" + strings.ReplaceAll(tc.name, " ", "-")
			if tc.chunked {
				fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s", path, tc.length, strings.Repeat("x", tc.length/2))
			} else {
				fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", path, tc.length, strings.Repeat("x", tc.length/2))
			}
			time.Sleep(100 * time.Millisecond)
			c.Close()

			b, _ := p.Pick(lanePick("/any"))
			waitIdle(t, b)
			mu.Lock()
			what, sent := got[path]
			mu.Unlock()
			if sent && !strings.Contains(what, "unexpected EOF") {
				t.Errorf("the backend read %s of a body the client cut at %d of %d bytes", what, tc.length/2, tc.length)
			}
			if served := p.LaneRequests(); served != tc.lane {
				t.Errorf("LaneRequests() = %d, want %d", served, tc.lane)
			}
			if resp, body := fetch(t, base+"/next"); resp.StatusCode != 200 || body != "ok" {
				t.Errorf("the next request: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestBackendHangsUpMidAnswer: a backend that hangs up in the middle of a
// large answer leaves the client with an answer that ends short (an error
// reading it, never a whole one), on both paths, with a length or chunked.
func TestBackendHangsUpMidAnswer(t *testing.T) {
	half := string(large[:len(large)/2])
	answers := map[string]string{
		"/length":  "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(large)) + "\r\n\r\n" + half,
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n" + half,
	}
	u := rawServer(t, func(req *http.Request, c net.Conn) {
		io.WriteString(c, answers[req.URL.Path])
		c.(*net.TCPConn).CloseWrite()
	})
	p := newProxy(u)
	for _, base := range []string{serve(t, p), reference(t, p)} {
		for path := range answers {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("GET %s read %d bytes and no error, from a backend that sent %d of %d", base+path, n, len(half), len(large))
			}
		}
	}
}

// TestLaneRelaysEveryByteOfLargeAnswers: answers of every size, with a
// length or chunked, reach the client whole, several at once on one
// backend.
func TestLaneRelaysEveryByteOfLargeAnswers(t *testing.T) {
	p := newProxy(backend(t, laneBackend()))
	base := serve(t, p)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			path := []string{"/large/k", "/stream/k"}[i%2]
			resp, err := http.Get(base + path)
			if err != nil {
				t.Error(err)
				return
			}
			body, err := io.ReadAll(bufio.NewReaderSize(resp.Body, 1000))
			resp.Body.Close()
			if err != nil || string(body) != string(large) {
				t.Errorf("GET %s: %d bytes, %v; want the %d bytes sent", path, len(body), err, len(large))
			}
		})
	}
	wg.Wait()
	if p.LaneRequests() != 8 {
		t.Errorf("LaneRequests() = %d, want 8", p.LaneRequests())
	}
}

// TestLaneBackendAnswersBeforeTheBodyEnds: a backend that answers without
// reading a large body gets the answer to the client, and neither
// connection carries another request with the rest of the body on it.
func TestLaneBackendAnswersBeforeTheBodyEnds(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	u := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.Method == http.MethodPut {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "ok")
	}))
	p := newProxy(u)
	base := serve(t, p)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		// The body, then a request the rest of the body must not become.
		fmt.Fprintf(c, "PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", 8*len(large))
		for range 8 {
			if _, err := c.Write(large); err != nil {
				return
			}
		}
		io.WriteString(c, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("answer %d, closing %v; want 413, closing", resp.StatusCode, resp.Close)
	}
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Error("a second answer came on the connection")
	}
	if resp, body := fetch(t, base+"/next"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("the next request: %d %q", resp.StatusCode, body)
	}
	b, _ := p.Pick(lanePick("/any"))
	waitIdle(t, b)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"PUT /big", "GET /next"}; !slices.Equal(seen, want) {
		t.Errorf("the backend saw %q, want %q", seen, want)
	}
}

// openPipes counts this process's open pipe ends, or -1 where /proc does
// not list them.
func openPipes() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// openPipesUpTo is openPipes once it is at most limit, or after a second:
// a pipe the pool let go of (as it does at random under the race detector)
// is closed once collected.
func openPipesUpTo(limit int) int {
	n := openPipes()
	for i := 0; n > limit && i < 100; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		n = openPipes()
	}
	return n
}

// TestLaneStreamsLargeBodiesWholeAndDropsThemCleanly: bodies too large to
// read whole (which go from socket to socket, splice_linux.go) reach the
// backend byte for byte, from clients that send them at once or in small
// pieces; a backend that hangs up in the middle of one gets the client a
// 502, and the next request goes through. No pipe is left open beyond
// one per body that streamed at once.
func TestLaneStreamsLargeBodiesWholeAndDropsThemCleanly(t *testing.T) {
	u := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hangup" {
			io.CopyN(io.Discard, r.Body, 100<<10)
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "%d %x", len(body), sum)
	}))
	p := newProxy(u)
	base := serve(t, p)
	addr := strings.TrimPrefix(base, "http://")
	body := bytes.Repeat(large, 3)[:3*len(large)-7]
	want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body))

	// A connection each, so that the bodies stream at the same time.
	put := func(path string, piece int) (int, string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", path, len(body))
			for rest := body; len(rest) > 0; {
				n := min(piece, len(rest))
				if _, err := c.Write(rest[:n]); err != nil {
					return
				}
				rest = rest[n:]
				if piece < len(body) {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, "", err
		}
		got, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got), err
	}

	before := openPipes()
	for round := range 5 {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				piece := []int{len(body), 100 << 10, 7000}[i%3]
				code, got, err := put("/sum", piece)
				if err != nil || code != http.StatusOK || got != want {
					t.Errorf("round %d: PUT of %d bytes in pieces of %d = %d %q, %v; want 200 %q", round, len(body), piece, code, got, err, want)
				}
			})
		}
		wg.Wait()
		code, got, err := put("/hangup", len(body))
		if err == nil && code != http.StatusBadGateway {
			t.Errorf("round %d: PUT to a backend that hangs up mid-body = %d %q, want 502", round, code, got)
		}
		if resp, got := fetch(t, base+"/next"); resp.StatusCode != http.StatusOK {
			t.Errorf("round %d: the next request = %d %q", round, resp.StatusCode, got)
		}
	}
	if p.LaneRequests() == 0 {
		t.Error("the lane forwarded none of the bodies")
	}
	// A pipe per body at once (two ends each) may wait in the pool.
	after := openPipesUpTo(before + 2*6)
	if before >= 0 && after > before+2*6 {
		t.Errorf("open pipe ends: %d before, %d after 35 large bodies, 6 at a time", before, after)
	}
	// One at a time, a body cut short by its backend leaves no pipe behind.
	for range 20 {
		put("/hangup", len(body))
	}
	if end := openPipesUpTo(after + 2); after >= 0 && end > after+2 {
		t.Errorf("open pipe ends: %d, then %d after 20 bodies the backend hung up on, one at a time", after, end)
	}
}

// TestLaneClientHangsUpMidAnswer: clients that read the start of a large
// answer (which goes from socket to socket, splice_linux.go) and hang up
// leave no pipe open, and the next client gets its answer whole.
func TestLaneClientHangsUpMidAnswer(t *testing.T) {
	p := newProxy(backend(t, laneBackend()))
	base := serve(t, p)
	addr := strings.TrimPrefix(base, "http://")
	get := func(path string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.CopyN(io.Discard, c, 200<<10)
	}
	get("/large/k")
	before := openPipes()
	for i := range 20 {
		get([]string{"/large/k", "/stream/k"}[i%2])
	}
	if after := openPipesUpTo(before + 2); before >= 0 && after > before+2 {
		t.Errorf("open pipe ends: %d, then %d after 20 clients hung up mid-answer, one at a time", before, after)
	}
	resp, err := http.Get(base + "/large/k")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, large) {
		t.Errorf("GET /large/k after the hang-ups: %d bytes, %v; want the %d sent", len(body), err, len(large))
	}
}
