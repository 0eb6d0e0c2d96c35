package forward

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// laneBackend answers by path with the kinds of answers a router relays:
// known length, chunked, trailers, no body, informational, hop-by-hop
// headers, a Kiln-Backend of its own.
func laneBackend() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		// What the backend was sent, for comparing the two paths; a long
		// body by its length and sum.
		body, err := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		if len(body) > 256 {
			body = nil
		}
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "uri": r.RequestURI, "host": r.Host, "header": r.Header,
			"length": r.ContentLength, "close": r.Close, "body": string(body), "err": fmt.Sprint(err),
			"trailer": r.Trailer, "sum": hex.EncodeToString(sum[:]),
		})
	})
	mux.HandleFunc("/large/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(large)))
		w.Write(large)
	})
	mux.HandleFunc("/stream/", func(w http.ResponseWriter, r *http.Request) {
		// Chunked, in pieces that arrive apart, with a trailer.
		w.Header().Set("Trailer", "X-Sum")
		for b := large; len(b) > 0; b = b[min(len(b), 64<<10):] {
			w.Write(b[:min(len(b), 64<<10)])
			http.NewResponseController(w).Flush()
		}
		w.Header().Set("X-Sum", "done")
	})
	mux.HandleFunc("/big/", func(w http.ResponseWriter, r *http.Request) {
		for i := range 2000 {
			fmt.Fprintf(w, "line %d\n", i) // past 2 KB: chunked
		}
	})
	mux.HandleFunc("/trailer/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/empty/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/cached/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/hints/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		// Later than the hints: a proxy that took them for the answer
		// would leave this one on a pooled connection, for the next request.
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/hop/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "for the router only")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set(backendHeader, "an impostor")
		w.Header().Set("X-Kept", "yes")
		io.WriteString(w, "hop")
	})
	mux.HandleFunc("/close/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/nodate/", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		w.WriteHeader(http.StatusTeapot)
	})
	return mux
}

// large is a 1 MB answer or body, not all the same byte.
var large = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// acceptEach listens on loopback until the test ends and serves each
// connection it accepts with serve, on a goroutine of its own.
func acceptEach(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// rawServer answers every request on every connection with answer, which
// writes raw bytes; connections stay open. It returns the server's URL.
func rawServer(t *testing.T, answer func(req *http.Request, c net.Conn)) *url.URL {
	t.Helper()
	addr := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			answer(req, c)
		}
	})
	return &url.URL{Scheme: "http", Host: addr}
}

// rawBackend answers every request with answer and closes the connection.
func rawBackend(t *testing.T, answer string) *url.URL {
	t.Helper()
	addr := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, answer)
		}
	})
	return &url.URL{Scheme: "http", Host: addr}
}

// exchangeRaw sends raw on a new connection to addr and reads one answer
// per request in it.
func exchangeRaw(t *testing.T, addr, raw string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for range strings.Count(raw, " HTTP/1.") {
		// Only HEAD matters to reading the answer.
		method, _, _ := strings.Cut(raw, " ")
		raw = raw[strings.Index(raw, "\r\n\r\n")+4:]
	next:
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		if resp.StatusCode < 200 {
			out = append(out, resp)
			goto next // the final answer follows
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the body: %v", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
	return out
}

// comparable renders what a client sees of an answer, without the Date.
func comparable(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode >= 200 && resp.Header.Get("Date") == "" && resp.Header.Get(backendHeader) != "" {
		t.Errorf("answer %d has no Date", resp.StatusCode)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	body, _ := io.ReadAll(resp.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	h.Write(&b)
	fmt.Fprintf(&b, "\n%s\ntrailer: %v", body, resp.Trailer)
	return b.String()
}

// TestLaneAnswersAsNetHTTP sends the same raw requests to a Proxy served
// with its lane and to the same Proxy served by net/http alone, and
// compares what the client gets and what the backend was sent.
func TestLaneAnswersAsNetHTTP(t *testing.T) {
	p := newProxy(backend(t, laneBackend()))
	laneAddr := strings.TrimPrefix(serve(t, p), "http://")
	refAddr := strings.TrimPrefix(reference(t, p), "http://")

	for _, tc := range []struct {
		name, raw string
		lane      bool // whether the lane, not net/http, serves it
	}{
		{"get", "GET /echo/k?a=1&b=%20 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", true},
		{"forwarded headers", "GET /echo/k HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=x\r\n\r\n", true},
		{"hop-by-hop request headers", "GET /echo/k HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nContent-Length: 0\r\n\r\n", true},
		{"odd header case and spacing", "GET /echo/k HTTP/1.1\r\nhOsT:h\r\nX-Tab:\tv\t\r\nx-empty:\r\n\r\n", true},
		{"head", "HEAD /big/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"delete", "DELETE /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"options", "OPTIONS /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"chunked", "GET /big/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"trailers", "GET /trailer/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large answer", "GET /large/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large answer, head", "HEAD /large/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large chunked answer with a trailer", "GET /stream/k HTTP/1.1\r\nHost: h\r\n\r\nGET /stream/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no key, head", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no content", "GET /empty/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"not modified", "GET /cached/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"early hints", "GET /hints/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"hop-by-hop answer headers", "GET /hop/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"backend closes", "GET /close/k HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no date", "GET /nodate/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"not found", "GET /nothing/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no key", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"pipelined", "GET /echo/a HTTP/1.1\r\nHost: h\r\n\r\nGET /big/b HTTP/1.1\r\nHost: h\r\n\r\nHEAD /echo/c HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"client closes", "GET /echo/k HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", true},
		{"body", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", true},
		{"body then plain", "POST /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"post without length", "POST /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"empty post", "POST /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", true},
		{"patch, lengths agree", "PATCH /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", true},
		{"empty forwarded-for", "GET /echo/k HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:\r\n\r\n", true},
		// net/http's: the lane hands these over.
		{"lengths differ in writing", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 03\r\n\r\nabc", false},
		{"semicolon in the query", "GET /echo/k?user=a;user=b HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"bad escape in the query", "GET /echo/k?x=%zz&y=1 HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"non-ASCII path", "GET /echo/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"lengths disagree", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", false},
		{"bad length", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", false},
		{"body past the read buffer", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("b", 5000), true},
		{"chunked body", "POST /echo/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false},
		{"chunked body with a trailer", "POST /echo/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 7\r\n\r\n", false},
		{"large body", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n" + string(large), true},
		{"large post, then plain", "POST /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n" + string(large) + "GET /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large chunked body", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n" + string(large) + "\r\n0\r\n\r\n", false},
		{"large body, then plain", "PUT /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n" + string(large) + "GET /echo/k HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"large body, head", "HEAD /echo/k HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + string(large[:70000]), true},
		{"http/1.0", "GET /echo/k HTTP/1.0\r\nHost: h\r\n\r\n", false},
		{"health", "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"expect", "GET /echo/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", false},
		{"te", "GET /echo/k HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", false},
		{"connection names a header", "GET /echo/k HTTP/1.1\r\nHost: h\r\nConnection: X-Private\r\nX-Private: 1\r\n\r\n", false},
		{"absolute form", "GET http://h/echo/k HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"long head", "GET /echo/k HTTP/1.1\r\nHost: h\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\n\r\n", false},
		{"bare LF", "GET /echo/k HTTP/1.1\nHost: h\n\n", false},
		{"no host", "GET /echo/k HTTP/1.1\r\n\r\n", false},
		{"two hosts", "GET /echo/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"bad host", "GET /echo/k HTTP/1.1\r\nHost: a b\r\n\r\n", false},
		{"folded header", "GET /echo/k HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"bad header name", "GET /echo/k HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.LaneRequests()
			got := exchangeRaw(t, laneAddr, tc.raw)
			served := p.LaneRequests() - before
			if want := exchangeRaw(t, refAddr, tc.raw); len(got) != len(want) {
				t.Fatalf("%d answers, net/http gives %d", len(got), len(want))
			} else {
				for i := range got {
					if g, w := comparable(t, got[i]), comparable(t, want[i]); g != w {
						t.Errorf("answer %d:\n%s\n\nnet/http answers:\n%s", i, g, w)
					}
				}
			}
			if lastClose := got[len(got)-1].Close; strings.Contains(tc.raw, "Connection: close") && !lastClose {
				t.Error("the client asked to close but the answer keeps the connection")
			}
			if tc.lane && served == 0 || !tc.lane && served != 0 {
				t.Errorf("the lane served %v requests; want it to serve them: %v", served, tc.lane)
			}
		})
	}
}

// TestLaneBackendFailures: answers a backend gets wrong become a 502 naming
// it, or a closed connection once the answer has started, as on net/http.
func TestLaneBackendFailures(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		status       int    // 0: the connection closes without an answer
		body         string // the answer's body, or a prefix of the 502's
	}{
		{"until close", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", 200, "all of it"},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 502, "kiln: replica-0 failed: "},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", 502, "kiln: replica-0 failed: "},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 502, "kiln: replica-0 failed: "},
		{"nothing", "", 502, "kiln: replica-0 failed: "},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", 0, ""},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(serve(t, newProxy(rawBackend(t, tc.answer))) + "/x")
			if tc.status == 0 {
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil {
					t.Fatal("a broken answer reached the client whole")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.body) {
				t.Fatalf("got %d %q; want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if got := resp.Header.Get(backendHeader); got != "replica-0" {
				t.Fatalf("Kiln-Backend %q", got)
			}
		})
	}
}

// TestLaneSlowHead: a head that arrives in pieces is still served; one
// that never ends is cut off by the header timeout rather than held open.
func TestLaneSlowHead(t *testing.T) {
	base := serve(t, newProxy(backend(t, echoPath)))
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, part := range []string{"GET /sl", "ow HTTP/1.1\r\nHo", "st: h\r\n", "\r\n"} {
		io.WriteString(c, part)
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(body) != "path /slow" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// FuzzLaneParse: the lane takes no request head that net/http would refuse
// or read differently.
func FuzzLaneParse(f *testing.F) {
	for _, s := range []string{
		"GET /kv/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /x?y=1 HTTP/1.1\r\nHost: h:80\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n",
		"DELETE /%zz HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nA: \x01\r\n\r\n",
		"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a?b? HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET //x/y?z HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a!b*(c)'\"{|}`^[] HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a;b=c,d:e@f$g&h+i=j HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a%2Fb?c=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h h\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: \r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := headEnd(raw)
		if n <= 0 {
			return
		}
		// A connection's second request: what the first left (its host,
		// its URL) must not pass for this one's.
		lc := &laneConn{remote: "127.0.0.1:1", p: &Proxy{PickHeaders: true}}
		var lr laneRequest
		if !lc.parse([]byte("GET /first?q HTTP/1.1\r\nHost: h\r\n\r\n"), &lr) {
			t.Fatal("the lane refuses a plain GET")
		}
		if !lc.parse(raw[:n], &lr) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw[:n])))
		if err != nil {
			t.Fatalf("the lane takes %q, net/http refuses it: %v", raw[:n], err)
		}
		if req.Method != lr.req.Method || req.RequestURI != lr.req.RequestURI || req.Host != lr.req.Host ||
			*req.URL != *lr.req.URL || req.ContentLength != lr.length || req.Close != lr.req.Close {
			t.Fatalf("%q: net/http reads %s %s host %q close %v, the lane %s %s host %q close %v",
				raw[:n], req.Method, req.URL, req.Host, req.Close, lr.req.Method, lr.req.URL, lr.req.Host, lr.req.Close)
		}
		for k, v := range lr.req.Header {
			if !slices.Equal(req.Header[k], v) {
				t.Fatalf("%q: header %s: net/http reads %q, the lane %q", raw[:n], k, req.Header[k], v)
			}
		}
	})
}

// FuzzResponseHead: the lane reads no backend answer that net/http would
// refuse, and delimits its body the same way.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 204\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		var scratch []byte
		var rh responseHead
		if err := readResponseHead(bufio.NewReader(bytes.NewReader(raw)), &scratch, method, &rh); err != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(scratch)), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("the lane reads %q, net/http refuses it: %v", scratch, err)
		}
		if resp.StatusCode != rh.code {
			t.Fatalf("%q: status %d, net/http reads %d", scratch, rh.code, resp.StatusCode)
		}
		chunked := len(resp.TransferEncoding) > 0
		if rh.body == bodyNone {
			if resp.Body != http.NoBody {
				t.Fatalf("%q: no body, but net/http reads one", scratch)
			}
			return
		}
		if chunked != (rh.body == bodyChunked) || !chunked && rh.body == bodyLength && resp.ContentLength != rh.length {
			t.Fatalf("%q: body kind %d length %d, net/http reads chunked %v length %d", scratch, rh.body, rh.length, chunked, resp.ContentLength)
		}
	})
}

// TestLaneClosesIdleConnections: a client connection that waits longer than
// the idle timeout for its next request is closed; a busy one is not.
func TestLaneClosesIdleConnections(t *testing.T) {
	p := newProxy(backend(t, echoPath))
	idleTimeout := 300 * time.Millisecond
	addr := strings.TrimPrefix(serveWith(t, p, &http.Server{Handler: handler(p), IdleTimeout: idleTimeout}), "http://")

	ask := func(c net.Conn, br *bufio.Reader) error {
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	idle, idleR := dial()
	busy, busyR := dial()
	for _, c := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{idle, idleR}, {busy, busyR}} {
		if err := ask(c.c, c.br); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for time.Since(start) < 4*idleTimeout {
		if err := ask(busy, busyR); err != nil {
			t.Fatalf("a busy connection failed after %s: %v", time.Since(start), err)
		}
		time.Sleep(idleTimeout / 10)
	}
	idle.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Fatalf("the idle connection: %v; want it closed", err)
	}
}

// TestLanePostsOnce: a POST goes only on a backend connection known to be
// open, and is not sent again when the backend drops it unanswered; a GET
// is.
func TestLanePostsOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/drop" {
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close() // no answer
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	base := serve(t, newProxy(u))
	post := func(path string) int {
		resp, err := http.Post(base+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/a"); code != 200 {
		t.Fatalf("first POST: %d", code)
	}
	srv.CloseClientConnections() // the router's kept connection is now dead
	time.Sleep(50 * time.Millisecond)
	if code := post("/a"); code != 200 {
		t.Fatalf("POST after the backend closed its idle connections: %d", code)
	}
	if code := post("/drop"); code != http.StatusBadGateway {
		t.Fatalf("POST the backend dropped: %d, want 502", code)
	}
	if resp, _ := fetch(t, base+"/drop"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET the backend dropped: %d, want 502", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	// The GET went on a fresh connection (the last one was dropped), so it
	// was not sent again either.
	want := map[string]int{"POST /a": 2, "POST /drop": 1, "GET /drop": 1}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("%s reached the backend %d times, want %d (all: %v)", k, seen[k], n, seen)
		}
	}
}

// TestLaneParseAllocatesTheTargetOnly: a connection's next plain request
// costs the parser one allocation, the target's string; its host, URL and
// request are the connection's.
func TestLaneParseAllocatesTheTargetOnly(t *testing.T) {
	lc := &laneConn{remote: "127.0.0.1:1", p: &Proxy{}}
	head := []byte("GET /kv/some-key?x=1 HTTP/1.1\r\nHost: kv.example:8080\r\nUser-Agent: wrk\r\n\r\n")
	var lr laneRequest
	if !lc.parse(head, &lr) {
		t.Fatal("the lane refuses a plain GET")
	}
	if n := testing.AllocsPerRun(100, func() { lc.parse(head, &lr) }); n > 1 {
		t.Errorf("parsing a plain GET allocates %v times, want 1", n)
	}
	if lr.req.URL.Path != "/kv/some-key" || lr.req.URL.RawQuery != "x=1" || lr.req.Host != "kv.example:8080" {
		t.Errorf("parsed %s %q host %q", lr.req.URL.Path, lr.req.URL.RawQuery, lr.req.Host)
	}
}
