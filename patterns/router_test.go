package patterns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// startBackends serves h(i) for each of n backends over real HTTP.
func startBackends(t *testing.T, n int, h func(i int) http.Handler) []*url.URL {
	t.Helper()
	var urls []*url.URL
	for i := 0; i < n; i++ {
		srv := httptest.NewServer(h(i))
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		urls = append(urls, u)
	}
	return urls
}

var quiet = slog.New(slog.DiscardHandler)

func whoAmI(i int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %d path %s", i, r.URL.Path)
	})
}

// testServer is a router served the way the router roles serve it.
type testServer struct{ URL string }

func startRouter(t *testing.T, svc *spec.Service, backends []*url.URL, opts Options) *testServer {
	t.Helper()
	h, err := NewRouter(svc, backends, opts)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, h)
}

// serve serves h with Serve on a loopback port until the test ends.
func serve(t testing.TB, h http.Handler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{URL: "http://" + ln.Addr().String()}
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestShardRouterSendsEachKeyToItsShard(t *testing.T) {
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}}
	rt := startRouter(t, svc, startBackends(t, 3, whoAmI), Options{})
	hits := map[string]int{}
	for i := 0; i < 300; i++ {
		key := "key-" + strconv.Itoa(i)
		want := "shard-" + strconv.Itoa(ShardOf(key, 3))
		for range 2 {
			resp, body := get(t, rt.URL+"/kv/"+key)
			if got := resp.Header.Get(HeaderBackend); got != want {
				t.Fatalf("%s served by %s, want %s", key, got, want)
			}
			if !strings.HasPrefix(body, "backend "+want[len("shard-"):]+" path /kv/"+key) {
				t.Fatalf("%s: body %q came from the wrong backend or path", key, body)
			}
		}
		hits[want]++
	}
	if len(hits) != 3 {
		t.Fatalf("keys reached only %v", hits)
	}

	resp, body := get(t, rt.URL+"/kv")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "path segment 2") {
		t.Fatalf("no key: %d %q; want 400 naming the key rule", resp.StatusCode, body)
	}
}

func TestRouterHealthAndMetrics(t *testing.T) {
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{Header: "X-Key"}}}
	rt := startRouter(t, svc, startBackends(t, 2, whoAmI), Options{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, _ := get(t, rt.URL+p); resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", rt.URL+"/x", nil)
	req.Header.Set("X-Key", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	backend := resp.Header.Get(HeaderBackend)
	waitMetrics(t, rt.URL,
		`kiln_backend_requests_total{backend="`+backend+`",code="200",service="kv"} 1`,
		`kiln_backend_request_duration_seconds_count{backend="`+backend+`",service="kv"} 1`,
		// Its connection went to net/http for /healthz: the lane served none.
		`kiln_lane_requests_total{service="kv"} 0`)
}

// waitMetrics polls /metrics until it holds every want: a request is counted
// just after its answer is sent.
func waitMetrics(t *testing.T, base string, want ...string) {
	t.Helper()
	var metrics string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		_, metrics = get(t, base+"/metrics")
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(metrics, w)
		}
		if !missing {
			return
		}
	}
	t.Fatalf("metrics lack one of %q:\n%s", want, metrics)
}

func TestRouterNamesFailedBackend(t *testing.T) {
	backends := startBackends(t, 1, whoAmI)
	dead, _ := url.Parse("http://" + closedAddr(t))
	svc := &spec.Service{Name: "hello", Simple: &spec.Simple{Replicas: 2}}
	rt := startRouter(t, svc, append(backends, dead), Options{Logger: quiet})
	get(t, rt.URL+"/")
	resp, body := get(t, rt.URL+"/")
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(HeaderBackend) != "replica-1" || !strings.Contains(body, "replica-1") {
		t.Fatalf("dead backend: %d %s %q", resp.StatusCode, resp.Header.Get(HeaderBackend), body)
	}
	waitMetrics(t, rt.URL, `kiln_backend_errors_total{backend="replica-1",service="hello"} 1`)
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestSimpleRoundRobin(t *testing.T) {
	svc := &spec.Service{Name: "hello", Simple: &spec.Simple{Replicas: 3}}
	rt := startRouter(t, svc, startBackends(t, 3, whoAmI), Options{})
	var got []string
	for range 6 {
		resp, _ := get(t, rt.URL+"/")
		got = append(got, resp.Header.Get(HeaderBackend))
	}
	if want := "replica-0 replica-1 replica-2 replica-0 replica-1 replica-2"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestSpreadTwoChoicesAvoidsTheBusyReplica(t *testing.T) {
	release := make(chan struct{})
	busy := make(chan struct{}, 100)
	backends := startBackends(t, 2, func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if i == 0 && r.URL.Query().Has("hold") {
				busy <- struct{}{}
				<-release
			}
			fmt.Fprint(w, i)
		})
	})
	svc := &spec.Service{Name: "s", Spread: &spec.Spread{Replicas: 2, Choice: spec.ChoiceTwoChoices}}
	rt := startRouter(t, svc, backends, Options{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	// Keep sending held requests until one is in flight on replica 0.
	for held := false; !held; {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, rt.URL+"/?hold") }()
		select {
		case <-busy:
			held = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	for range 20 {
		if resp, _ := get(t, rt.URL+"/"); resp.Header.Get(HeaderBackend) != "replica-1" {
			t.Fatalf("request went to %s while replica-0 was busy", resp.Header.Get(HeaderBackend))
		}
	}
}

func TestSpreadRandomUsesEveryReplica(t *testing.T) {
	svc := &spec.Service{Name: "s", Spread: &spec.Spread{Replicas: 4, Choice: spec.ChoiceRandom}}
	rt := startRouter(t, svc, startBackends(t, 4, whoAmI), Options{})
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 4; i++ {
		resp, _ := get(t, rt.URL+"/")
		seen[resp.Header.Get(HeaderBackend)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("200 requests reached only %v", seen)
	}
}

// TestRouterStreams checks that neither the request nor the answer is held
// whole: the client reads the echo of its first line before sending the
// second.
func TestRouterStreams(t *testing.T) {
	echo := func(int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			rc.EnableFullDuplex()
			w.WriteHeader(200)
			rc.Flush()
			sc := bufio.NewScanner(r.Body)
			for sc.Scan() {
				fmt.Fprintln(w, "echo:", sc.Text())
				rc.Flush()
			}
		})
	}
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 1}}}
	rt := startRouter(t, svc, startBackends(t, 2, echo), Options{})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", rt.URL+"/stream", pr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req = req.WithContext(ctx)
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(respc)
			return
		}
		respc <- resp
	}()
	fmt.Fprintln(pw, "one")
	resp := <-respc
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "echo: one\n" {
		t.Fatalf("first line %q, %v: the router buffered instead of streaming", line, err)
	}
	fmt.Fprintln(pw, "two")
	pw.Close()
	if line, _ = rd.ReadString('\n'); line != "echo: two\n" {
		t.Fatalf("second line %q", line)
	}
}

// TestServeDrainsInFlightRequests: when Serve's context ends, a request in
// flight still gets its answer, a kept-alive idle connection is closed, a
// connection accepted before that sends its first request after it and
// gets it answered (net/http's Shutdown drops it: a client of a program
// replaced in place saw EOF), and nothing new is accepted; for a leaf
// (net/http) and a router (its lane).
func TestServeDrainsInFlightRequests(t *testing.T) {
	slow := func() (http.Handler, chan struct{}) {
		started := make(chan struct{}, 1)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				started <- struct{}{}
				time.Sleep(300 * time.Millisecond)
			}
			fmt.Fprint(w, "done")
		}), started
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, h http.Handler) http.Handler
	}{
		{"leaf", func(t *testing.T, h http.Handler) http.Handler { return Leaf(h) }},
		{"router", func(t *testing.T, h http.Handler) http.Handler {
			backend := httptest.NewServer(h)
			t.Cleanup(backend.Close)
			u, _ := url.Parse(backend.URL)
			rt, err := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{u}, Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			return rt
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, started := slow()
			h := tc.make(t, inner)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- Serve(ctx, ln, h, 5*time.Second) }()

			// A new connection with nothing sent yet, an idle kept-alive
			// connection, and a request in flight. The idle one's answer
			// says the new one, dialled first, was accepted.
			fresh, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			idle, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			fmt.Fprint(idle, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
			idleR := bufio.NewReader(idle)
			if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first answer: %v", err)
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			got := make(chan string, 1)
			go func() {
				_, body := get(t, "http://"+addr+"/slow")
				got <- body
			}()
			<-started
			cancel() // as on SIGTERM
			if body := <-got; body != "done" {
				t.Fatalf("in-flight request got %q", body)
			}
			idle.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := idleR.ReadByte(); err != io.EOF {
				t.Fatalf("idle connection: %v; want it closed", err)
			}
			fmt.Fprint(fresh, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
			fresh.SetReadDeadline(time.Now().Add(2 * time.Second))
			freshR := bufio.NewReader(fresh)
			resp, err := http.ReadResponse(freshR, nil)
			if err != nil {
				t.Fatalf("request on a connection accepted before the drain, sent during it: %v; want an answer", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "done" || !resp.Close {
				t.Fatalf("request sent during the drain = %d %q (close %v), want 200 \"done\" and Connection: close", resp.StatusCode, body, resp.Close)
			}
			if _, err := freshR.ReadByte(); err != io.EOF {
				t.Fatalf("connection after its answer during the drain: %v; want it closed", err)
			}
			if err := <-served; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if _, err := http.Get("http://" + addr + "/"); err == nil {
				t.Fatal("still accepting after draining")
			}
		})
	}
}

// TestSpreadResolvesReplicasByName forwards to every address a name
// resolves to, as a spread router does with a headless Service.
func TestSpreadResolvesReplicasByName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: whoAmI(0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// localhost may also resolve to ::1; serve there too when we can.
	if ln6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
		srv6 := &http.Server{Handler: whoAmI(1)}
		go srv6.Serve(ln6)
		t.Cleanup(func() { srv6.Close() })
	}
	u, _ := url.Parse(fmt.Sprintf("dns+http://localhost:%d", port))
	svc := &spec.Service{Name: "s", Spread: &spec.Spread{Replicas: 2, Choice: spec.ChoiceTwoChoices}}
	rt := startRouter(t, svc, []*url.URL{u}, Options{Logger: quiet})
	for range 10 {
		resp, body := get(t, rt.URL+"/x")
		b := resp.Header.Get(HeaderBackend)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "backend ") || (b != "replica-127.0.0.1" && b != "replica-::1") {
			t.Fatalf("got %d from %q: %q", resp.StatusCode, b, body)
		}
	}

	shard := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 1}}}
	if _, err := NewRouter(shard, []*url.URL{u}, Options{}); err == nil || !strings.Contains(err.Error(), "one fixed URL per shard") {
		t.Fatalf("shard router over a DNS name: %v", err)
	}
}

// TestRouterKeepsBackendConnections checks the router's backend transport:
// sequential requests share one connection, a connection the backend
// closed while idle is replaced without failing a request, and a client
// that gives up frees the router at once.
func TestRouterKeepsBackendConnections(t *testing.T) {
	var conns atomic.Int64
	slow := make(chan struct{})
	freed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-slow:
			case <-r.Context().Done(): // the router hung up
				freed <- struct{}{}
				return
			}
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(slow)
	u, _ := url.Parse(srv.URL)
	svc := &spec.Service{Name: "hello", Simple: &spec.Simple{Replicas: 1}}
	rt := startRouter(t, svc, []*url.URL{u}, Options{Logger: quiet})

	for range 20 {
		if resp, body := get(t, rt.URL+"/"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d backend connections; want 1", n)
	}
	srv.CloseClientConnections()
	if resp, body := get(t, rt.URL+"/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after the backend closed its idle connections: %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", rt.URL+"/slow", nil)
	start := time.Now()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("a request the client gave up on succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("cancelling took %s", took)
	}
	select {
	case <-freed:
	case <-time.After(2 * time.Second):
		t.Fatal("the router still waits for the backend 2 s after its client gave up")
	}
	if resp, _ := get(t, rt.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("after a cancelled request: %d", resp.StatusCode)
	}
}

// TestRouterStreamsKnownLengthAnswers: part of an answer of known length
// reaches the client before the backend has written the rest.
func TestRouterStreamsKnownLengthAnswers(t *testing.T) {
	rest := make(chan struct{})
	backend := startBackends(t, 1, func(int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-rest
			io.WriteString(w, "-last")
		})
	})
	svc := &spec.Service{Name: "hello", Simple: &spec.Simple{Replicas: 1}}
	rt := startRouter(t, svc, backend, Options{})
	resp, err := http.Get(rt.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first part: %q, %v", buf, err)
	}
	close(rest)
	if b, _ := io.ReadAll(resp.Body); string(b) != "-last" {
		t.Fatalf("rest: %q", b)
	}
}

// TestLaneKeyRules: for every kind of key rule the lane sends a request to
// the shard net/http sends it to, and a key function may keep the requests
// it is given.
func TestLaneKeyRules(t *testing.T) {
	var (
		mu   sync.Mutex // the race detector sees no order in socket I/O
		kept []*http.Request
	)
	keyFunc := func(r *http.Request) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		kept = append(kept, r)
		return r.Header.Get("X-Tenant") + "/" + r.URL.Query().Get("user") + "@" + r.Host, nil
	}
	backends := startBackends(t, 4, whoAmI)
	for _, key := range []spec.Key{
		{PathSegment: 2}, {Regexp: `^/kv/([^/]+)`}, {Header: "X-Tenant"}, {Query: "user"}, {Func: "tenant"},
	} {
		t.Run(key.String(), func(t *testing.T) {
			mu.Lock()
			kept = nil
			mu.Unlock()
			svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 4, Key: key}}
			h, err := NewRouter(svc, backends, Options{KeyFunc: keyFunc})
			if err != nil {
				t.Fatal(err)
			}
			lane := serve(t, h)
			ref := httptest.NewServer(h)
			defer ref.Close()
			for i := range 40 {
				var got [2]string
				for j, base := range []string{lane.URL, ref.URL} {
					req, _ := http.NewRequest("GET", fmt.Sprintf("%s/kv/k%d?user=u%d", base, i, i), nil)
					req.Header.Set("X-Tenant", fmt.Sprintf("t%d", i))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("status %d", resp.StatusCode)
					}
					got[j] = resp.Header.Get(HeaderBackend)
				}
				if key.Func == "" && got[0] != got[1] {
					t.Fatalf("request %d: the lane sent it to %s, net/http to %s", i, got[0], got[1])
				}
			}
			if key.Func != "" {
				// The two paths see different hosts, so only check what was kept.
				mu.Lock()
				defer mu.Unlock()
				for i, r := range kept {
					if want := fmt.Sprintf("t%d", i/2); r.Header.Get("X-Tenant") != want {
						t.Fatalf("kept request %d has X-Tenant %q, want %q: it was reused", i, r.Header.Get("X-Tenant"), want)
					}
				}
			}
		})
	}
}

// TestServeGraceEndsQuietStreams: Serve returns soon after its grace
// period even while a connection relays a stream whose backend has gone
// quiet (server-sent events, a long poll), with the lane and without.
func TestServeGraceEndsQuietStreams(t *testing.T) {
	for _, lane := range []bool{true, false} {
		t.Run(fmt.Sprintf("lane=%v", lane), func(t *testing.T) {
			release := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "event 1\n")
				w.(http.Flusher).Flush()
				<-release // quiet for a long while
			}))
			defer backend.Close()
			defer close(release)
			u, _ := url.Parse(backend.URL)
			opts := Options{Logger: quiet}
			if !lane {
				opts.Transport = &http.Transport{}
			}
			h, err := NewRouter(&spec.Service{Name: "s", Simple: &spec.Simple{Replicas: 1}}, []*url.URL{u}, opts)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			grace := 300 * time.Millisecond
			go func() { served <- Serve(ctx, ln, h, grace) }()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "event 1\n" {
				t.Fatalf("first event %q", line)
			}
			start := time.Now()
			cancel()
			select {
			case err := <-served:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Serve: %v; want the grace period's end", err)
				}
			case <-time.After(grace + 2*time.Second):
				t.Fatalf("Serve still running %s after shutdown with a %s grace", time.Since(start), grace)
			}
		})
	}
}

// TestRoutersAndRootsWarmUpBeforeTheyServe: Warm opens one connection to
// each backend, which the first request then uses, so the first clients
// of a router or root that has just started wait on no dial; a backend
// that is down does not hold Warm up, and is dialled on demand.
func TestRoutersAndRootsWarmUpBeforeTheyServe(t *testing.T) {
	counted := func(conns *atomic.Int64) *url.URL {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `["ok"]`)
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		return u
	}
	down, _ := url.Parse("http://" + closedAddr(t))
	for _, tc := range []struct {
		name string
		svc  *spec.Service
		new  func(*spec.Service, []*url.URL, Options) (http.Handler, error)
	}{
		{"shard router", &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 2, Key: spec.Key{PathSegment: 2}}}, NewRouter},
		{"scatter root", &spec.Service{Name: "search", Scatter: &spec.Scatter{Leaves: 2, Gather: spec.GatherConcat, Timeout: spec.Duration(time.Second), OnLeafError: spec.OnLeafErrorPartial}}, NewRoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a, b atomic.Int64
			h, err := tc.new(tc.svc, []*url.URL{counted(&a), counted(&b)}, Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			h.(Warmer).Warm(context.Background())
			// The server counts a connection once it has accepted it,
			// which may come just after the dial returns.
			for deadline := time.Now().Add(2 * time.Second); (a.Load() != 1 || b.Load() != 1) && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if a.Load() != 1 || b.Load() != 1 {
				t.Fatalf("after Warm the backends have %d and %d connections, want 1 each", a.Load(), b.Load())
			}
			rt := serve(t, h)
			for _, key := range []string{"a", "b", "c", "d"} {
				if resp, _ := get(t, rt.URL+"/kv/"+key); resp.StatusCode != 200 {
					t.Fatalf("GET /kv/%s = %d", key, resp.StatusCode)
				}
			}
			if a.Load() != 1 || b.Load() != 1 {
				t.Errorf("after 4 requests the backends have %d and %d connections, want the warm one each", a.Load(), b.Load())
			}

			h, err = tc.new(tc.svc, []*url.URL{down, counted(&a)}, Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			h.(Warmer).Warm(context.Background())
			if took := time.Since(start); took > time.Second {
				t.Errorf("Warm with a backend down took %s", took)
			}
		})
	}
}
