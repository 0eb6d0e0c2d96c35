package forward

import (
	"context"
	"net/http"
	"sync"
)

// Warm opens one connection to each of hosts (host:port) and keeps it for
// the first request there, so that a router that has just started does
// not make its first clients wait on name lookups and dials (which, on a
// busy machine, can take longer than a scatter's timeout). It returns once
// every dial has ended or ctx is done; a backend it cannot reach yet is
// dialled on demand, as without Warm. Only forward's own transports warm:
// with another Transport, Warm does nothing.
func (p *Proxy) Warm(ctx context.Context, hosts ...string) {
	p.init()
	Warm(ctx, p.transport, hosts...)
}

// Warm is Proxy.Warm for a transport NewTransport returned, and does
// nothing for any other.
func Warm(ctx context.Context, rt http.RoundTripper, hosts ...string) {
	if t, ok := rt.(*transport); ok {
		t.pool.warm(ctx, hosts)
	}
}

func (p *connPool) warm(ctx context.Context, hosts []string) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			// One dial each, without the dialer's patience: a backend
			// that is not up yet is no reason to wait, nor to be
			// remembered as down.
			if nc, err := p.dialer.Dialer.DialContext(ctx, "tcp", h); err == nil {
				p.put(h, newBackendConn(nc), endUnsure)
			}
		})
	}
	wg.Wait()
}
