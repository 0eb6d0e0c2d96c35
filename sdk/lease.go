package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/restart"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/patterns/lease"
	"github.com/kiln-dev/kiln/spec"
)

// Lease is a lease this process holds: see Lock.
type Lease = lease.Lease

// Lock blocks until this process holds the lease called name among the
// processes of its service, or ctx ends. The service declares the lease
// (spec.Service.Leases, a lease block in kiln.hcl, lease= in a
// //kiln:service), and only its replicas, shards or leaves take it.
//
// The lease stays held, renewed in the background, until Release is
// called or ctx ends; a process that crashes or hangs loses it after the
// lease's duration. Its Context ends if it is lost; work done under it
// should stop then, and what it writes should carry its Token, which is
// larger than that of every earlier holder, so that a store can refuse a
// deposed holder's late writes.
//
// On the local target the driver keeps the leases of its processes, and
// frees those of a process that exits at once; on Kubernetes each is a
// Lease object, taken through client-go's leader election.
func Lock(ctx context.Context, name string) (*Lease, error) {
	b, d, err := leases(name)
	if err != nil {
		return nil, err
	}
	return b.Acquire(ctx, name, d)
}

// Lead runs fn whenever this process leads its service's processes, that
// is, holds the lease called name (see Lock), until ctx ends. fn's context
// ends when leadership is lost; Lead then waits for fn to return and
// campaigns again. When fn returns while still leading, Lead gives up the
// lease and returns fn's error; when ctx ends, it gives it up and returns
// nil.
//
//	sdk.Lead(ctx, "compactor", func(ctx context.Context, token uint64) error {
//		return compact(ctx, token) // pass token to what it writes
//	})
func Lead(ctx context.Context, name string, fn func(ctx context.Context, token uint64) error) error {
	b, d, err := leases(name)
	if err != nil {
		return err
	}
	return lease.Lead(ctx, b, name, d, fn)
}

// Leader declares the lease name on the service (with the default
// duration, unless the spec sets one) and runs fn with Lead in each of its
// replicas, shards or leaves, so that one of them at a time runs it. An
// error fn returns is logged, and the process campaigns again a little
// later.
func Leader(name string, fn func(ctx context.Context, token uint64) error) Option {
	return func(c *config) { c.leaders = append(c.leaders, leader{name: name, fn: fn}) }
}

type leader struct {
	name string
	fn   func(ctx context.Context, token uint64) error
}

// declareLeases adds to svc the leases its Leader options take.
func declareLeases(svc *spec.Service, c *config) {
	for _, l := range c.leaders {
		if svc.Lease(l.name) == nil {
			svc.Leases = append(svc.Leases, spec.Lease{Name: l.name})
		}
	}
}

// lead runs the service's Leader functions until ctx ends, and returns
// once each has given up its lease.
func lead(ctx context.Context, leaders []leader, log *slog.Logger) (wait func()) {
	var wg sync.WaitGroup
	for _, l := range leaders {
		wg.Go(func() {
			var b restart.Backoff
			for ctx.Err() == nil {
				started := time.Now()
				err := Lead(ctx, l.name, func(ctx context.Context, token uint64) error {
					log.Info("leading", "lease", l.name, "token", token)
					err := l.fn(ctx, token)
					if ctx.Err() != nil {
						log.Info("no longer leading", "lease", l.name, "token", token, "why", context.Cause(ctx))
					}
					return err
				})
				if err == nil || ctx.Err() != nil {
					return
				}
				wait := b.Next(time.Since(started))
				log.Error("leader function failed; campaigning again", "lease", l.name, "err", err, "in", wait)
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		})
	}
	return wg.Wait
}

// leases finds the back-end that takes this process's lease name, and the
// lease's duration, or says why there is none.
func leases(name string) (lease.Backend, time.Duration, error) {
	self := Self()
	declared, err := lease.Durations(os.Getenv(patterns.EnvLeases))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", patterns.EnvLeases, err)
	}
	d, ok := declared[name]
	switch {
	case ok:
	case self.Role == "":
		return nil, 0, fmt.Errorf("lease %q: this process is the driver, which takes no leases: the replicas, shards or leaves of a service that declares the lease take it", name)
	case len(declared) == 0:
		return nil, 0, fmt.Errorf("lease %q: this %s of service %q takes no leases: declare the lease on the service (spec.Service.Leases, a lease block in kiln.hcl, or lease=%s in its //kiln:service); routers and roots never take one", name, self.Role, self.Service, name)
	default:
		return nil, 0, fmt.Errorf("lease %q: service %q declares no such lease; it declares %s", name, self.Service, strings.Join(quoted(lease.Names(declared)), ", "))
	}
	if u := os.Getenv(lease.EnvURL); u != "" {
		return &lease.Client{URL: u, Service: self.Service}, d, nil
	}
	b, err := clusterLeases(self.Service)
	if err != nil {
		return nil, 0, fmt.Errorf("lease %q: %w", name, err)
	}
	return b, d, nil
}
