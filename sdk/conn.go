package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/patterns/forward"
)

// Conn reaches another service of the app by its name. Each target wires
// the name to that service's entry point and hands the addresses to every
// process in KILN_SERVICES (see patterns.Discovery):
//
//   - local: the entry's address on 127.0.0.1;
//   - Kubernetes: the entry Service's DNS name and port (the router inside
//     the pod for an ambassador shard);
//   - microVM: the entry's address inside the guest;
//   - KubeVirt: the entry Service's DNS name in the cluster domain.
//
// Nothing in the program names a host or a port. A service that refuses
// connections for a moment (restarting, or just rolled out) is dialled
// again for up to five seconds before a request fails, whatever its
// method: nothing was sent yet.
type Conn struct {
	name   string
	caller string // file:line of the Dial call, for errors
	base   atomic.Pointer[string]
	client *http.Client
	calls  atomic.Int64 // requests sent, for patterns.PathCalls
}

// newConnTransport is what an App's Conns share: the transport kiln's
// routers use (patterns/forward). Connections to a service are kept alive
// across requests; a service of the app is never reached through an HTTP
// proxy; and a service that refuses connections for a moment (being
// replaced, or reached before the cluster's Service rules or network
// policies have caught up with a new pod) is dialled again for a few
// seconds, whatever the method, since nothing was sent yet.
func newConnTransport() http.RoundTripper { return forward.NewTransport() }

// Dial returns a connection to service name of this app. It can be called
// before Run (typically in main, to hand to the handlers that need it). Run
// checks every Dial before the program starts: a name the app does not
// have stops it, naming the app's services.
func (a *App) Dial(name string) *Conn {
	if a.transport == nil {
		a.transport = newConnTransport()
	}
	c := &Conn{name: name}
	c.client = &http.Client{Transport: counted{a.transport, &c.calls}}
	if _, file, line, ok := runtime.Caller(1); ok {
		c.caller = fmt.Sprintf("%s:%d", filepath.Base(file), line)
	}
	a.conns = append(a.conns, c)
	return c
}

// resolve gives every Conn its address, or says which one names a service
// that services lacks.
func (a *App) resolve(app string, services patterns.Discovery) error {
	var bad []string
	for _, c := range a.conns {
		u, ok := services.Lookup(c.name)
		if !ok {
			bad = append(bad, fmt.Sprintf("Dial(%q) at %s", c.name, c.caller))
			continue
		}
		u = strings.TrimRight(u, "/")
		c.base.Store(&u)
	}
	if len(bad) == 0 {
		return nil
	}
	if len(services) == 0 {
		return fmt.Errorf("%s: %s is empty, so this process knows no service of its app; the deployer that starts it sets it (kiln run, kiln deploy)", strings.Join(bad, ", "), patterns.EnvServices)
	}
	return fmt.Errorf("%s: app %q has no such service; its services are %s", strings.Join(bad, ", "), app, strings.Join(quoted(services.Names()), ", "))
}

// Name is the service c reaches.
func (c *Conn) Name() string { return c.name }

// URL is the address of path on the service: URL("/cart/ann") is
// http://HOST:PORT/cart/ann. It is "" until Run has started, and in the
// driver, which serves no requests.
func (c *Conn) URL(path string) string {
	b := c.base.Load()
	if b == nil || *b == "" {
		return ""
	}
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return *b + path
}

// NewRequest is http.NewRequestWithContext for path on the service.
func (c *Conn) NewRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	u := c.URL(path)
	if u == "" {
		return nil, fmt.Errorf("service %q: no address yet (Dial before Run, and call the service from a handler)", c.name)
	}
	return http.NewRequestWithContext(ctx, method, u, body)
}

// Do sends req, which NewRequest made, with connections kept alive.
func (c *Conn) Do(req *http.Request) (*http.Response, error) { return c.client.Do(req) }

// Get is a GET of path on the service.
func (c *Conn) Get(ctx context.Context, path string) (*http.Response, error) {
	req, err := c.NewRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// Client is the HTTP client Do uses, for code that wants one.
func (c *Conn) Client() *http.Client { return c.client }

// counted counts the requests it sends: an atomic add, so that the calls
// between services can be drawn without asking every request for more.
type counted struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t counted) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// withCalls answers patterns.PathCalls with the requests each Conn has
// sent, and passes every other request to h.
func (a *App) withCalls(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != patterns.PathCalls {
			h.ServeHTTP(w, r)
			return
		}
		calls := map[string]int64{}
		for _, c := range a.conns {
			if n := c.calls.Load(); n > 0 {
				calls[c.name] += n
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(calls)
	})
}
