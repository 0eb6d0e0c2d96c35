package patterns

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-dev/kiln/patterns/forward"
)

// Response headers every router and root sets.
const (
	// HeaderBackend names the backend(s) that served a request.
	HeaderBackend = "Kiln-Backend"
	// HeaderMissing names the leaves a partial scatter/gather answer lacks.
	HeaderMissing = "Kiln-Missing"
)

// frontend answers the health and metrics endpoints itself and passes every
// other request on. It is what makes a handler drainable.
type frontend struct {
	next     http.Handler
	metrics  http.Handler          // nil for leaves: the program may serve its own
	proxy    *forward.Proxy        // a router's, which serves its listener; nil for the others
	warm     func(context.Context) // a router's or root's: see Warm
	draining atomic.Bool
}

func (f *frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		w.Write([]byte("ok\n"))
		return
	case "/readyz":
		if f.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
		return
	case "/metrics":
		if f.metrics != nil {
			f.metrics.ServeHTTP(w, r)
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// Warm opens a connection to each backend of a router or root, which
// keeps it for its first request there; the program calls it before it
// says it serves, so that its first clients wait on no lookup or dial. It
// returns once every dial has ended or ctx is done; a backend not up yet
// is dialled on demand.
func (f *frontend) Warm(ctx context.Context) {
	if f.warm != nil {
		f.warm(ctx)
	}
}

// Warmer is what a router or root returned by NewRouter and NewRoot is:
// see Warm.
type Warmer interface{ Warm(ctx context.Context) }

// Drain makes /readyz fail so that load balancers stop sending new requests.
func (f *frontend) Drain() { f.draining.Store(true) }

// Leaf wraps a program's handler with /healthz and /readyz, for the leaf and
// replica roles.
func Leaf(h http.Handler) http.Handler { return &frontend{next: h} }

// metrics are one router's or root's Prometheus series. Each handler has its
// own registry, so nothing is global.
type metrics struct {
	service  string
	registry *prometheus.Registry
	requests *prometheus.CounterVec   // by backend and status code
	latency  *prometheus.HistogramVec // by backend
	errors   *prometheus.CounterVec   // by backend
}

func newMetrics(service string) *metrics {
	labels := prometheus.Labels{"service": service}
	m := &metrics{
		service:  service,
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_backend_requests_total", Help: "Requests forwarded to each backend, by status code.", ConstLabels: labels,
		}, []string{"backend", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kiln_backend_request_duration_seconds", Help: "Time for each backend to answer.", ConstLabels: labels,
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_backend_errors_total", Help: "Backend failures: refused, reset, timed out or 5xx.", ConstLabels: labels,
		}, []string{"backend"}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.errors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(backend string, code int, start time.Time, failed bool) {
	m.requests.WithLabelValues(backend, statusText(code)).Inc()
	m.latency.WithLabelValues(backend).Observe(time.Since(start).Seconds())
	if failed {
		m.errors.WithLabelValues(backend).Inc()
	}
}

// backend returns the series of one backend. A request then costs no label
// lookup: each series is found once, the first time it is needed, so that
// /metrics shows the same series as with observe.
func (m *metrics) backend(name string) *backendMetrics {
	return &backendMetrics{m: m, name: name}
}

// backendMetrics caches one backend's series.
type backendMetrics struct {
	m       *metrics
	name    string
	latency atomic.Pointer[prometheus.Observer]
	errors  atomic.Pointer[prometheus.Counter]
	codes   [600]atomic.Pointer[prometheus.Counter] // requests, by status code
}

func (b *backendMetrics) observe(code int, took time.Duration, failed bool) {
	b.requests(code).Inc()
	latency := b.latency.Load()
	if latency == nil {
		o := b.m.latency.WithLabelValues(b.name)
		latency = &o
		b.latency.Store(latency)
	}
	(*latency).Observe(took.Seconds())
	if failed {
		errors := b.errors.Load()
		if errors == nil {
			c := b.m.errors.WithLabelValues(b.name)
			errors = &c
			b.errors.Store(errors)
		}
		(*errors).Inc()
	}
}

// requests is the series of answers with code. The variable a series is
// cached in is declared where it is stored only: declared for every call,
// it escaped, and cost every request an allocation.
func (b *backendMetrics) requests(code int) prometheus.Counter {
	if code < 0 || code >= len(b.codes) {
		return b.m.requests.WithLabelValues(b.name, statusText(code))
	}
	if c := b.codes[code].Load(); c != nil {
		return *c
	}
	c := b.m.requests.WithLabelValues(b.name, statusText(code))
	b.codes[code].Store(&c)
	return c
}

// statusText avoids an allocation per request for the common codes.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	case 502:
		return "502"
	}
	return itoa(code)
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	return string(b[n:])
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Ready probes url (a process's /readyz) once and reports whether it
// answered 200. Deployers poll it before they announce an entry point.
func Ready(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
