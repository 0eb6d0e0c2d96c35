package patterns

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
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
	return NewTransport()
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
	return t
}

// picker chooses the backend for one request. done, when not nil, is called
// once the request has finished.
type picker func(r *http.Request) (i int, done func(), err error)

// NewRouter returns the data plane of a simple, shard or spread service: it
// forwards each request, streaming, to one of backends.
func NewRouter(svc *spec.Service, backends []*url.URL, opts Options) (http.Handler, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("service %q: router needs at least one backend", svc.Name)
	}
	var pick picker
	unit := "replica"
	switch {
	case svc.Simple != nil:
		pick = roundRobin(len(backends))
	case svc.Shard != nil:
		unit = "shard"
		key, err := KeyExtractor(svc.Shard.Key, opts.KeyFunc)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
		n := len(backends)
		pick = func(r *http.Request) (int, func(), error) {
			k, err := key(r)
			if err != nil {
				return 0, nil, err
			}
			return ShardOf(k, n), nil, nil
		}
	case svc.Spread != nil:
		pick = spread(len(backends), svc.Spread.Choice == spec.ChoiceTwoChoices)
	default:
		return nil, fmt.Errorf("service %q: pattern %q has no router", svc.Name, svc.Pattern())
	}

	rt := &router{pick: pick, metrics: newMetrics(svc.Name)}
	transport := opts.transport()
	log := opts.logger()
	buffers := newBufferPool()
	for i, u := range backends {
		name := fmt.Sprintf("%s-%d", unit, i)
		target := u
		rt.backends = append(rt.backends, &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
			},
			Transport: transport,
			// -1 flushes as bytes arrive, so streamed answers stream.
			FlushInterval: -1,
			BufferPool:    buffers,
			ModifyResponse: func(resp *http.Response) error {
				resp.Header.Set(HeaderBackend, name)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				w.Header().Set(HeaderBackend, name)
				if r.Context().Err() != nil {
					// The client went away; nobody reads this answer.
					w.WriteHeader(499)
					return
				}
				log.Warn("backend failed", "backend", name, "err", err)
				http.Error(w, fmt.Sprintf("kiln: %s failed: %v", name, err), http.StatusBadGateway)
			},
		})
		rt.names = append(rt.names, name)
	}
	return &frontend{next: rt, metrics: rt.metrics.handler()}, nil
}

type router struct {
	pick     picker
	backends []*httputil.ReverseProxy
	names    []string
	metrics  *metrics
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i, done, err := rt.pick(r)
	if err != nil {
		http.Error(w, "kiln: "+err.Error(), http.StatusBadRequest)
		return
	}
	if done != nil {
		defer done()
	}
	if r.ContentLength != 0 {
		// Let the answer stream back while the body still streams in; Go's
		// HTTP/1 server otherwise stops reading the body at the first write.
		http.NewResponseController(w).EnableFullDuplex()
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	rt.backends[i].ServeHTTP(rec, r)
	rt.metrics.observe(rt.names[i], rec.code, start, rec.code >= 500)
}

func roundRobin(n int) picker {
	var next atomic.Uint64
	return func(*http.Request) (int, func(), error) {
		return int((next.Add(1) - 1) % uint64(n)), nil, nil
	}
}

// spread picks a random backend, or with twoChoices the one with fewer
// requests in flight of two random ones ("the power of two choices").
func spread(n int, twoChoices bool) picker {
	inflight := make([]atomic.Int64, n)
	return func(*http.Request) (int, func(), error) {
		i := rand.IntN(n)
		if twoChoices && n > 1 {
			j := rand.IntN(n - 1)
			if j >= i {
				j++
			}
			if inflight[j].Load() < inflight[i].Load() {
				i = j
			}
		}
		inflight[i].Add(1)
		return i, func() { inflight[i].Add(-1) }, nil
	}
}

// statusRecorder remembers the status code for metrics. Unwrap lets
// http.ResponseController reach the real writer's Flush.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
