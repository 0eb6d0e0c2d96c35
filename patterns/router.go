package patterns

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

// Options carry what a spec cannot: Go functions and transport tuning.
type Options struct {
	// KeyFunc serves shard key rules that name a function.
	KeyFunc KeyFunc
	// Gather serves scatter/gather services whose gather names a function.
	Gather GatherFunc
	// Transport reaches the backends; nil means a pooled transport sized for
	// proxying.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

func (o *Options) transport() http.RoundTripper {
	if o.Transport != nil {
		return o.Transport
	}
	return newHopTransport(NewTransport())
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// NewTransport is an HTTP transport for talking to backends: it keeps enough
// idle connections per backend that a busy router does not churn sockets.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = false
	// The dialer of DefaultTransport, and a bound on unacknowledged sends
	// (see backendUserTimeout).
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: dialControl}
	t.DialContext = d.DialContext
	// Pass Accept-Encoding through as the client sent it: the transport
	// neither asks backends for gzip on its own nor unzips their answers,
	// work that changed nothing a client sees.
	t.DisableCompression = true
	return t
}

// picker chooses the backend for one request among bs.
type picker func(r *http.Request, bs []*backend) (*backend, error)

// backend is one place a router forwards to.
type backend struct {
	name     string // "shard-2", or "replica-10.0.3.7" for resolved ones
	addr     string // host:port
	proxy    *httputil.ReverseProxy
	series   *backendMetrics
	inflight atomic.Int64
}

// NewRouter returns the data plane of a simple, shard or spread service: it
// forwards each request, streaming, to one of backends.
//
// A simple or spread router also takes a single URL of the form
// dns+http://host:port: it then forwards to every address host resolves
// to, resolving again every few seconds, so replicas may come and go (a
// headless Service on Kubernetes).
func NewRouter(svc *spec.Service, backends []*url.URL, opts Options) (http.Handler, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("service %q: router needs at least one backend", svc.Name)
	}
	var pick picker
	unit := "replica"
	switch {
	case svc.Simple != nil:
		pick = roundRobin()
	case svc.Shard != nil:
		unit = "shard"
		key, err := KeyExtractor(svc.Shard.Key, opts.KeyFunc)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
		pick = func(r *http.Request, bs []*backend) (*backend, error) {
			k, err := key(r)
			if err != nil {
				return nil, err
			}
			return bs[ShardOf(k, len(bs))], nil
		}
	case svc.Spread != nil:
		pick = spread(svc.Spread.Choice == spec.ChoiceTwoChoices)
	default:
		return nil, fmt.Errorf("service %q: pattern %q has no router", svc.Name, svc.Pattern())
	}

	rt := &router{pick: pick, metrics: newMetrics(svc.Name)}
	if k := svc.Shard; k != nil {
		rt.use = requestUse{headers: k.Key.Header != "" || k.Key.Func != "", keeps: k.Key.Func != ""}
	}
	transport, pool := opts.Transport, (*connPool)(nil)
	if transport == nil {
		pool = newConnPool()
		transport = &hopTransport{fallback: NewTransport(), pool: pool}
	}
	newBackend := rt.backendMaker(transport, opts.logger())
	// The lane speaks to backends itself, so it serves only with kiln's own
	// transport and backends that are a bare http://host:port.
	plain := pool != nil
	if len(backends) == 1 && backends[0].Scheme == dnsScheme {
		if svc.Shard != nil {
			return nil, fmt.Errorf("service %q: a shard router needs one fixed URL per shard, not %s", svc.Name, backends[0])
		}
		rt.set = newResolvedSet(backends[0], unit, newBackend, opts.logger())
	} else {
		var bs []*backend
		for i, u := range backends {
			bs = append(bs, newBackend(fmt.Sprintf("%s-%d", unit, i), u))
			plain = plain && u.Scheme == "http" && u.Host != "" && u.User == nil && (u.Path == "" || u.Path == "/") && !u.ForceQuery && u.RawQuery == ""
		}
		rt.set = staticSet(bs)
	}
	f := &frontend{next: rt, metrics: rt.metrics.handler()}
	if plain {
		f.lane = newLane(rt, pool, opts.logger())
	}
	return f, nil
}

// backendMaker returns a function that builds the proxy to one backend.
func (rt *router) backendMaker(transport http.RoundTripper, log *slog.Logger) func(name string, target *url.URL) *backend {
	buffers := newBufferPool()
	return func(name string, target *url.URL) *backend {
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				// Append to the chain the client sent (a load balancer's, say)
				// rather than start a new one, as nginx's
				// $proxy_add_x_forwarded_for does.
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
				pr.SetXForwarded()
			},
			Transport: transport,
			// 0 leaves flushing to ReverseProxy for answers of unknown
			// length (chunked streams, server-sent events): it flushes them
			// as bytes arrive. Answers of known length are flushed by
			// statusRecorder while bytes are still due, so they stream too;
			// a complete answer goes out in one write when the handler
			// returns. (-1 here would also flush the headers alone, from a
			// timer goroutine, costing a second write per request.)
			FlushInterval: 0,
			BufferPool:    buffers,
			ModifyResponse: func(resp *http.Response) error {
				// Header.Set without re-canonicalizing a canonical key.
				resp.Header[HeaderBackend] = []string{name}
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				w.Header().Set(HeaderBackend, name)
				if r.Context().Err() != nil {
					// The client went away; nobody reads this answer.
					w.WriteHeader(statusClientGone)
					return
				}
				log.Warn("backend failed", "backend", name, "err", err)
				http.Error(w, fmt.Sprintf("kiln: %s failed: %v", name, err), http.StatusBadGateway)
			},
		}
		return &backend{name: name, addr: target.Host, proxy: proxy, series: rt.metrics.backend(name)}
	}
}

type router struct {
	pick    picker
	use     requestUse // what pick does with the request
	set     backendSet
	metrics *metrics
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bs := rt.set.current(r.Context())
	if len(bs) == 0 {
		http.Error(w, "kiln: no backend to forward to: "+rt.set.String(), http.StatusServiceUnavailable)
		return
	}
	b, err := rt.pick(r, bs)
	if err != nil {
		http.Error(w, "kiln: "+err.Error(), http.StatusBadRequest)
		return
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	if r.ContentLength != 0 {
		// Let the answer stream back while the body still streams in; Go's
		// HTTP/1 server otherwise stops reading the body at the first write.
		http.NewResponseController(w).EnableFullDuplex()
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	b.proxy.ServeHTTP(rec, r)
	b.series.observe(rec.code, start, rec.code >= 500)
}

func roundRobin() picker {
	var next atomic.Uint64
	return func(_ *http.Request, bs []*backend) (*backend, error) {
		return bs[(next.Add(1)-1)%uint64(len(bs))], nil
	}
}

// spread picks a random backend, or with twoChoices the one with fewer
// requests in flight of two random ones ("the power of two choices").
func spread(twoChoices bool) picker {
	return func(_ *http.Request, bs []*backend) (*backend, error) {
		n := len(bs)
		i := rand.IntN(n)
		if twoChoices && n > 1 {
			j := rand.IntN(n - 1)
			if j >= i {
				j++
			}
			if bs[j].inflight.Load() < bs[i].inflight.Load() {
				i = j
			}
		}
		return bs[i], nil
	}
}

// statusRecorder remembers the status code for metrics. Unwrap lets
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
