package patterns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-dev/kiln/patterns/forward"
	"github.com/kiln-dev/kiln/spec"
)

// Options carry what a spec cannot: Go functions and transport tuning.
type Options struct {
	// KeyFunc serves shard key rules that name a function.
	KeyFunc KeyFunc
	// Gather serves scatter/gather services whose gather names a function.
	Gather GatherFunc
	// Transport reaches the backends; nil means forward's own, which a
	// router's fast lane shares (see forward.Proxy).
	Transport http.RoundTripper
	// Logger receives backend failures and panics; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) transport() http.RoundTripper {
	if o.Transport != nil {
		return o.Transport
	}
	return forward.NewTransport()
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// picker chooses the backend for one request among bs.
type picker func(r *http.Request, bs []*forward.Backend) (*forward.Backend, error)

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
		pick = func(r *http.Request, bs []*forward.Backend) (*forward.Backend, error) {
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

	rt := &router{pick: pick, metrics: newMetrics(svc.Name), log: opts.logger()}
	p := &forward.Proxy{
		Pick:         rt.choose,
		Header:       HeaderBackend,
		Transport:    opts.Transport,
		ErrorHandler: rt.fail,
		Log:          rt.log,
	}
	if k := svc.Shard; k != nil {
		// Only a key function, the program's own code, may keep the
		// requests it is given; only it and a header rule read headers.
		p.PickHeaders = k.Key.Header != "" || k.Key.Func != ""
		p.PickKeeps = k.Key.Func != ""
	}
	// The lane, which speaks to backends itself, serves only with forward's
	// own transport and plain backends.
	plain := opts.Transport == nil
	if len(backends) == 1 && backends[0].Scheme == dnsScheme {
		if svc.Shard != nil {
			return nil, fmt.Errorf("service %q: a shard router needs one fixed URL per shard, not %s", svc.Name, backends[0])
		}
		rt.set = newResolvedSet(backends[0], unit, rt.backend, rt.log)
	} else {
		var bs []*forward.Backend
		for i, u := range backends {
			bs = append(bs, rt.backend(fmt.Sprintf("%s-%d", unit, i), u))
			plain = plain && forward.Plain(u)
		}
		rt.set = staticSet(bs)
	}
	switch {
	case plain:
		rt.metrics.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "kiln_lane_requests_total",
			Help:        "Requests the router served on its fast lane; the others went through net/http.",
			ConstLabels: prometheus.Labels{"service": svc.Name},
		}, func() float64 { return float64(p.LaneRequests()) }))
	case p.Transport == nil:
		p.Transport = forward.NewTransport() // no lane
	}
	warm := func(ctx context.Context) { p.Warm(ctx, hosts(rt.set.current(ctx))...) }
	return &frontend{next: p, metrics: rt.metrics.handler(), proxy: p, warm: warm}, nil
}

// hosts are the host:port of bs that speak plain HTTP, the ones Warm
// dials.
func hosts(bs []*forward.Backend) []string {
	us := make([]*url.URL, len(bs))
	for i, b := range bs {
		us[i] = b.URL
	}
	return plainHosts(us)
}

func plainHosts(us []*url.URL) []string {
	var out []string
	for _, u := range us {
		if u.Scheme == "http" {
			out = append(out, u.Host)
		}
	}
	return out
}

// backend returns the backend called name at target, whose requests the
// metrics count.
func (rt *router) backend(name string, target *url.URL) *forward.Backend {
	series := rt.metrics.backend(name)
	return &forward.Backend{Name: name, URL: target, Done: func(code int, took time.Duration) {
		series.observe(code, took, code >= 500)
	}}
}

type router struct {
	pick    picker
	set     backendSet
	metrics *metrics
	log     *slog.Logger
}

// pickError is a request the router cannot forward, and the status that
// says why.
type pickError struct {
	code int
	msg  string
}

func (e *pickError) Error() string { return e.msg }

// choose is the Proxy's Pick.
func (rt *router) choose(r *http.Request) (*forward.Backend, error) {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return nil, forward.ErrUseHandler // the frontend's own
	}
	bs := rt.set.current(r.Context())
	if len(bs) == 0 {
		return nil, &pickError{http.StatusServiceUnavailable, "no backend to forward to: " + rt.set.String()}
	}
	b, err := rt.pick(r, bs)
	if err != nil {
		return nil, &pickError{http.StatusBadRequest, err.Error()}
	}
	return b, nil
}

// fail is the Proxy's ErrorHandler: a request the router could not route,
// or whose backend failed (the error names it).
func (rt *router) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusBadGateway
	if pe, ok := errors.AsType[*pickError](err); ok {
		code = pe.code
	} else {
		rt.log.Warn("backend failed", "err", err)
	}
	http.Error(w, "kiln: "+err.Error(), code)
}

func roundRobin() picker {
	var next atomic.Uint64
	return func(_ *http.Request, bs []*forward.Backend) (*forward.Backend, error) {
		return bs[(next.Add(1)-1)%uint64(len(bs))], nil
	}
}

// spread picks a random backend, or with twoChoices the one with fewer
// requests in flight of two random ones ("the power of two choices").
func spread(twoChoices bool) picker {
	return func(_ *http.Request, bs []*forward.Backend) (*forward.Backend, error) {
		n := len(bs)
		i := rand.IntN(n)
		if twoChoices && n > 1 {
			j := rand.IntN(n - 1)
			if j >= i {
				j++
			}
			if bs[j].InFlight() < bs[i].InFlight() {
				i = j
			}
		}
		return bs[i], nil
	}
}
