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

// Resolution timing: how stale the address list may get, and how long one
// lookup may take.
const (
	resolveEvery   = 5 * time.Second
	resolveTimeout = 2 * time.Second
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
		s.resolve(ctx)
		if list = s.list.Load(); list == nil {
			return nil
		}
		return *list
	}
	if time.Since(time.Unix(0, s.checked.Load())) > resolveEvery && s.resolving.CompareAndSwap(false, true) {
		go func() {
			defer s.resolving.Store(false)
			s.resolve(context.Background())
		}()
	}
	return *list
}

// resolve looks the name up and keeps the backends whose address stayed, so
// their in-flight counts and connections survive.
func (s *resolvedSet) resolve(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, s.host)
	s.checked.Store(time.Now().UnixNano())
	if err != nil {
		s.log.Warn("resolving backends", "host", s.host, "err", err)
		return // keep the last good list
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
}
