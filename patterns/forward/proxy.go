package forward

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUseHandler, returned by Pick, leaves a request to the handler of the
// http.Server given to Serve: the lane hands its connection over unread.
// (A service's own endpoints, such as health checks, are answered so.)
var ErrUseHandler = errors.New("forward: the request is left to the server's handler")

// StatusClientGone is the status Done reports for a request whose client
// hung up before its answer, as nginx logs it.
const StatusClientGone = 499

// A Backend is one place a Proxy forwards to; Pick returns it. A Backend
// serves one Proxy, and its fields must not change once it has served.
type Backend struct {
	// Name names the backend in the Proxy's Header, and in the errors its
	// failures give ErrorHandler.
	Name string
	// URL is where requests go, as httputil.ProxyRequest.SetURL reads it.
	// The lane reaches only Plain ones: a Proxy whose Pick may return
	// another needs a Transport.
	URL *url.URL
	// Done, if not nil, is called once for each request forwarded here, as
	// its answer ends or fails: with the status code the client was sent
	// (StatusClientGone if it hung up before the answer), and how long the
	// request took from the moment Pick chose the backend.
	Done func(code int, took time.Duration)

	inflight atomic.Int64
	proxy    atomic.Pointer[backendProxy] // the path through net/http
}

// InFlight is how many requests the backend is serving now, counted by the
// Proxy: what a picker that avoids busy backends reads.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Proxy forwards HTTP/1.1 requests to the backends Pick chooses, streaming
// both ways. Its fields must not change once it has served. ServeHTTP
// forwards through net/http; Serve adds the lane (see the package comment).
type Proxy struct {
	// Pick chooses the backend of a request. Its error is answered by
	// ErrorHandler, except ErrUseHandler. It must be set.
	//
	// On the lane r is the lane's own: its context is Background, it has no
	// Header unless PickHeaders and no Body unless PickKeeps, and Pick may
	// not keep it unless PickKeeps.
	Pick func(r *http.Request) (*Backend, error)
	// PickHeaders gives Pick the request's headers on the lane; without it
	// the lane saves parsing them into a map. (net/http's requests always
	// have them.)
	PickHeaders bool
	// PickKeeps gives Pick, on the lane, a request of its own, with headers
	// and body, that it may keep; without it the lane reuses one request for
	// each of a connection's requests.
	PickKeeps bool

	// Header, if not empty, is a response header naming the backend (its
	// Name) in every answer the backend gave or failed to give; a header of
	// that name from the backend is dropped.
	Header string

	// Transport carries the requests net/http serves to the backends. If
	// nil, the Proxy uses its own (NewTransport), whose connections the lane
	// shares; any other Transport turns the lane off, since the lane speaks
	// to backends itself.
	Transport http.RoundTripper

	// ErrorHandler answers a request that Pick failed, or whose backend
	// failed before the answer began: err is Pick's, or one naming the
	// backend ("shard-2 failed: …") with Header already set. A request whose
	// client has gone gets no answer and no call. If nil, the error is
	// logged and the answer is an empty 502 Bad Gateway, as with
	// httputil.ReverseProxy.
	ErrorHandler func(http.ResponseWriter, *http.Request, error)

	// Log receives the failures no answer can tell: a backend failing
	// mid-answer, a panic in Pick. If nil, slog.Default() does.
	Log *slog.Logger

	once      sync.Once
	header    string // Header, canonical
	transport http.RoundTripper
	pool      *connPool // the lane's and transport's; nil if the lane is off
	buffers   *bufferPool
	log       *slog.Logger
	served    atomic.Uint64 // requests the lane served

	mu      sync.Mutex
	servers []*server // what Serve serves, for Shutdown
	closed  bool      // Shutdown was called
}

func (p *Proxy) init() {
	p.once.Do(func() {
		if p.Header != "" {
			p.header = textproto.CanonicalMIMEHeaderKey(p.Header)
		}
		p.transport = p.Transport
		if p.transport == nil {
			p.pool = newConnPool()
			p.transport = &transport{fallback: newHTTPTransport(), pool: p.pool}
		}
		p.buffers = newBufferPool()
		if p.log = p.Log; p.log == nil {
			p.log = slog.Default()
		}
	})
}

// LaneRequests is how many requests the lane has served; net/http served
// the others.
func (p *Proxy) LaneRequests() uint64 { return p.served.Load() }

// ServeHTTP forwards r to the backend Pick chooses, through
// httputil.ReverseProxy.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.init()
	b, err := p.Pick(r)
	if err != nil {
		p.errorHandler()(w, r, err)
		return
	}
	b.inflight.Add(1)
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		// Also when ReverseProxy aborts a broken answer with a panic.
		b.inflight.Add(-1)
		if b.Done != nil {
			b.Done(rec.code, time.Since(start))
		}
	}()
	if r.ContentLength != 0 {
		// Let the answer stream back while the body still streams in; Go's
		// HTTP/1 server otherwise stops reading the body at the first write.
		http.NewResponseController(w).EnableFullDuplex()
	}
	p.reverseProxy(b).ServeHTTP(rec, r)
}

func (p *Proxy) errorHandler() func(http.ResponseWriter, *http.Request, error) {
	if p.ErrorHandler != nil {
		return p.ErrorHandler
	}
	return func(w http.ResponseWriter, r *http.Request, err error) {
		p.log.Warn("proxy error", "err", err)
		w.WriteHeader(http.StatusBadGateway)
	}
}

// backendFailed answers a request whose backend failed before its answer
// began, on either path.
func (p *Proxy) backendFailed(w http.ResponseWriter, r *http.Request, b *Backend, err error) {
	if p.header != "" {
		w.Header()[p.header] = []string{b.Name}
	}
	if r.Context().Err() != nil {
		// The client went away; nobody reads this answer.
		w.WriteHeader(StatusClientGone)
		return
	}
	p.errorHandler()(w, r, fmt.Errorf("%s failed: %w", b.Name, err))
}

// backendProxy is the ReverseProxy to one backend, made by the Proxy that
// owns it.
type backendProxy struct {
	owner *Proxy
	rp    *httputil.ReverseProxy
}

func (p *Proxy) reverseProxy(b *Backend) *httputil.ReverseProxy {
	if bp := b.proxy.Load(); bp != nil && bp.owner == p {
		return bp.rp
	}
	target := b.URL
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Append to the chain the client sent (a load balancer's, say)
			// rather than start a new one, as nginx's
			// $proxy_add_x_forwarded_for does.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport: p.transport,
		// 0 leaves flushing to ReverseProxy for answers of unknown length
		// (chunked streams, server-sent events): it flushes them as bytes
		// arrive. Answers of known length are flushed by statusRecorder
		// while bytes are still due, so they stream too; a complete answer
		// goes out in one write when the handler returns. (-1 here would
		// also flush the headers alone, from a timer goroutine, costing a
		// second write per request.)
		FlushInterval: 0,
		BufferPool:    p.buffers,
		// What ReverseProxy logs itself (a backend failing mid-answer).
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			if p.header != "" {
				resp.Header[p.header] = []string{b.Name}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.backendFailed(w, r, b, err)
		},
	}
	b.proxy.Store(&backendProxy{owner: p, rp: rp})
	return rp
}

// Plain reports whether u is a bare http://host:port, with nothing to add
// to a request's path or query: the only kind of backend the lane reaches.
func Plain(u *url.URL) bool {
	return u != nil && u.Scheme == "http" && u.Host != "" && u.User == nil &&
		(u.Path == "" || u.Path == "/") && !u.ForceQuery && u.RawQuery == ""
}

// statusRecorder remembers the status code for Done. Unwrap lets
// http.ResponseController reach the real writer's Flush.
//
// It also streams answers of known length: while declared bytes are still
// due, each write is flushed at once; the write that completes the answer is
// not, so the server sends it together with the headers in one syscall when
// the handler returns.
type statusRecorder struct {
	http.ResponseWriter
	code    int
	wrote   bool
	pending int64 // declared body bytes not yet written; -1 if unknown
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.wrote = true
		s.code = code
		s.pending = -1
		if cl := s.ResponseWriter.Header().Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				s.pending = n
			}
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(b)
	if s.pending >= 0 {
		s.pending -= int64(n)
		if s.pending > 0 && err == nil {
			s.Flush()
		}
	}
	return n, err
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
