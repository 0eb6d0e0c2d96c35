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
// every dial has ended or ctx is done, with the hosts it could not reach;
// a backend it cannot reach yet is dialled on demand, as without Warm.
// Only forward's own transports warm: with another Transport, Warm does
// nothing and reports nothing unreached.
func (p *Proxy) Warm(ctx context.Context, hosts ...string) (unreached []string) {
	p.init()
	return Warm(ctx, p.transport, hosts...)
}

// Warm is Proxy.Warm for a transport NewTransport returned, and does
// nothing for any other.
func Warm(ctx context.Context, rt http.RoundTripper, hosts ...string) (unreached []string) {
	if t, ok := rt.(*transport); ok {
		return t.pool.warm(ctx, hosts)
	}
	return nil
}

// warm holds a connection to each of hosts, reusing one it keeps, and
// returns the hosts it could not reach, in the order given.
func (p *connPool) warm(ctx context.Context, hosts []string) []string {
	reached := make([]bool, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			if c, _, err := p.get(ctx, h); err == nil {
				p.put(h, c)
				reached[i] = true
			}
		})
	}
	wg.Wait()
	var unreached []string
	for i, h := range hosts {
		if !reached[i] {
			unreached = append(unreached, h)
		}
	}
	return unreached
}
