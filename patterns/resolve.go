package patterns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/patterns/forward"
)

// dnsScheme marks a backend URL whose host is resolved to many backends.
const dnsScheme = "dns+http"

// Resolution timing: how stale the address list may get, how long one
// lookup may take, and how long a request waits for a name that has no
// address yet.
const (
	resolveEvery    = 5 * time.Second
	resolveTimeout  = 2 * time.Second
	resolvePatience = 5 * time.Second
)

// backendSet is what a router forwards to.
type backendSet interface {
	current(ctx context.Context) []*forward.Backend
	String() string
}

// staticSet is a fixed list of backends.
type staticSet []*forward.Backend

func (s staticSet) current(context.Context) []*forward.Backend { return s }
func (s staticSet) String() string                             { return fmt.Sprintf("%d fixed backends", len(s)) }

// resolvedSet forwards to every address of a DNS name. It resolves on
// demand: the first request waits for a lookup, later ones trigger a
// refresh in the background once the list is stale, so an idle router does
// no work.
type resolvedSet struct {
	host, port string
	unit       string
	newBackend func(name string, target *url.URL) *forward.Backend
	log        *slog.Logger

	list      atomic.Pointer[[]*forward.Backend]
	checked   atomic.Int64 // unix nanoseconds of the last lookup
	gaveUp    atomic.Int64 // unix nanoseconds when a request last waited in vain
	resolving atomic.Bool
	mu        sync.Mutex // serialises lookups
}

func newResolvedSet(u *url.URL, unit string, newBackend func(string, *url.URL) *forward.Backend, log *slog.Logger) *resolvedSet {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return &resolvedSet{host: u.Hostname(), port: port, unit: unit, newBackend: newBackend, log: log}
}

func (s *resolvedSet) String() string {
	return fmt.Sprintf("%s resolves to no address", net.JoinHostPort(s.host, s.port))
}

func (s *resolvedSet) current(ctx context.Context) []*forward.Backend {
	list := s.list.Load()
	if list == nil || len(*list) == 0 {
		return s.await(ctx)
	}
	if time.Since(time.Unix(0, s.checked.Load())) > resolveEvery && s.resolving.CompareAndSwap(false, true) {
		go func() {
			defer s.resolving.Store(false)
			if err := s.resolve(context.Background()); err != nil {
				s.log.Warn("resolving backends", "host", s.host, "err", err)
			}
		}()
	}
	return *list
}

// await looks the name up until it has an address, for at most
// resolvePatience: replicas that are starting get their DNS records as they
// get addresses, and a DNS server fails a lookup now and then. Once a
// request has waited that long in vain, the next ones look up once each,
// for a minute or until the name resolves, rather than each waiting. (A
// caller whose own deadline ends first, as Warm's does, has not waited in
// vain.)
func (s *resolvedSet) await(parent context.Context) []*forward.Backend {
	patient := time.Since(time.Unix(0, s.gaveUp.Load())) > time.Minute
	ctx, cancel := context.WithTimeout(parent, resolvePatience)
	defer cancel()
	var err error
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		// Requests waiting together share lookups.
		if time.Since(time.Unix(0, s.checked.Load())) >= wait || !patient {
			if e := s.resolve(ctx); e != nil {
				err = e
			}
		}
		if list := s.list.Load(); list != nil && len(*list) > 0 {
			s.gaveUp.Store(0)
			return *list
		}
		if !patient {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() == nil {
				s.gaveUp.Store(time.Now().UnixNano())
				s.log.Warn("backends do not resolve", "host", s.host, "err", err, "waited", resolvePatience)
			}
			return nil
		case <-t.C:
		}
	}
}

// resolve looks the name up and keeps the backends whose address stayed, so
// their in-flight counts and connections survive. A failed lookup keeps
// the last good list.
func (s *resolvedSet) resolve(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, s.host)
	s.checked.Store(time.Now().UnixNano())
	if err != nil {
		return err
	}
	slices.Sort(addrs)
	old := map[string]*forward.Backend{}
	if prev := s.list.Load(); prev != nil {
		for _, b := range *prev {
			old[b.Name] = b
		}
	}
	next := make([]*forward.Backend, 0, len(addrs))
	for _, a := range addrs {
		name := s.unit + "-" + a
		if b, ok := old[name]; ok {
			next = append(next, b)
			continue
		}
		next = append(next, s.newBackend(name, &url.URL{Scheme: "http", Host: net.JoinHostPort(a, s.port)}))
	}
	s.list.Store(&next)
	return nil
}
