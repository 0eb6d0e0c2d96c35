package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// backendHeader names the backend in the test Proxies' answers.
const backendHeader = "Kiln-Backend"

var quiet = slog.New(slog.DiscardHandler)

// errNoKey is the test Proxies' Pick error, for requests to "/".
var errNoKey = errors.New("no key in the path")

// newProxy is a Proxy over urls the way a simple router is one: round
// robin over backends named replica-i; "/" has no key (400) and /healthz is
// the server's own.
func newProxy(urls ...*url.URL) *Proxy {
	var bs []*Backend
	for i, u := range urls {
		bs = append(bs, &Backend{Name: fmt.Sprintf("replica-%d", i), URL: u})
	}
	var next atomic.Uint64
	return &Proxy{
		Pick: func(r *http.Request) (*Backend, error) {
			switch r.URL.Path {
			case "/healthz":
				return nil, ErrUseHandler
			case "/":
				return nil, errNoKey
			}
			return bs[(next.Add(1)-1)%uint64(len(bs))], nil
		},
		Header: backendHeader,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			if errors.Is(err, errNoKey) {
				code = http.StatusBadRequest
			}
			http.Error(w, "kiln: "+err.Error(), code)
		},
		Log: quiet,
	}
}

// handler answers /healthz and passes the rest to p, as a router's
// frontend does.
func handler(p *Proxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok\n")
			return
		}
		p.ServeHTTP(w, r)
	})
}

// serve serves p, with its lane, on a loopback port until the test ends,
// and returns its base URL.
func serve(t testing.TB, p *Proxy) string {
	return serveWith(t, p, &http.Server{Handler: handler(p)})
}

// serveWith is serve with srv for what the lane leaves.
func serveWith(t testing.TB, p *Proxy, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln, srv) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// reference serves p through net/http alone, without the lane.
func reference(t testing.TB, p *Proxy) string {
	srv := httptest.NewServer(handler(p))
	t.Cleanup(srv.Close)
	return srv.URL
}

// backend serves h over loopback HTTP until the test ends.
func backend(t testing.TB, h http.Handler) *url.URL {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// echoPath answers with the request's path.
var echoPath = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "path "+r.URL.Path)
})

// fetch GETs u and reads the whole answer.
func fetch(t testing.TB, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", u, err)
	}
	return resp, string(body)
}
