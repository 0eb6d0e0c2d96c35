// Package lease is kiln's election and locking: named leases among the
// processes of one service. At most one process holds a lease at a time;
// it renews it while it runs, and one that crashes or hangs loses it once
// the lease's duration passes without a renewal. Every acquisition carries
// a fencing token larger than every earlier one, which the holder passes
// to what it writes so that a deposed holder's late writes can be refused.
//
// A Backend takes leases for a process. Two exist: Client, which asks the
// Table that the local target's driver serves for its processes, and
// package kubelease, on Kubernetes Lease objects through client-go's leader
// election. Lead builds leader election on any of them.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// EnvURL is where a process finds the driver's Table on the local target.
const EnvURL = "KILN_LEASE_URL"

// ErrLost is the cause of a lease's context when its holder lost it:
// it could not renew it in time, or another process holds it now.
var ErrLost = errors.New("lease lost")

// ErrReleased is the cause of a lease's context once it was released.
var ErrReleased = errors.New("lease released")

// Backend takes leases for one process.
type Backend interface {
	// Acquire blocks until the process holds the lease called name, or
	// ctx ends. It holds it for d at a time, renewing it until the
	// lease is released, ctx ends, or the lease is lost.
	Acquire(ctx context.Context, name string, d time.Duration) (*Lease, error)
}

// Lease is a lease its process holds.
type Lease struct {
	name   string
	token  uint64
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Hold is how a Backend hands out a lease it acquired. keep runs for as
// long as the lease is held: it renews the lease and returns nil when its
// ctx ends (the lease was released, or the ctx given to Acquire ended), or
// an error once the lease is lost. release, called after keep returned nil,
// gives the lease up.
func Hold(parent context.Context, name string, token uint64, keep func(ctx context.Context) error, release func()) *Lease {
	l := &Lease{name: name, token: token, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(parent)
	go func() {
		defer close(l.done)
		if err := keep(l.ctx); err != nil {
			l.cancel(fmt.Errorf("%w: %s: %v", ErrLost, name, err))
			return
		}
		release()
	}()
	return l
}

// Name is the lease's name.
func (l *Lease) Name() string { return l.name }

// Token is the fencing token of this acquisition: larger than that of
// every earlier acquisition of the same lease.
func (l *Lease) Token() uint64 { return l.token }

// Context ends when the lease is lost or released; context.Cause then
// wraps ErrLost or is ErrReleased.
func (l *Lease) Context() context.Context { return l.ctx }

// Lost reports whether the lease ended because its holder lost it.
func (l *Lease) Lost() bool { return errors.Is(context.Cause(l.ctx), ErrLost) }

// Release gives the lease up, if it is still held, and returns once
// another process can take it.
func (l *Lease) Release() {
	l.cancel(ErrReleased)
	<-l.done
}

// Lead runs fn each time this process becomes the holder of the lease
// called name, with the acquisition's fencing token. fn's context ends when
// the lease is lost; Lead then waits for fn to return and campaigns again.
// When fn returns while it still holds the lease, Lead releases it and
// returns fn's error. When ctx ends, Lead releases the lease and returns
// nil.
func Lead(ctx context.Context, b Backend, name string, d time.Duration, fn func(ctx context.Context, token uint64) error) error {
	for {
		l, err := b.Acquire(ctx, name, d)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = fn(l.Context(), l.Token())
		lost := l.Lost()
		l.Release()
		switch {
		case ctx.Err() != nil:
			return nil
		case !lost:
			return err
		}
	}
}

// Durations reads EnvLeases' form, "name=15s,other=5s": the leases a
// process may take and how long each is held.
func Durations(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if s == "" {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		name, dur, ok := strings.Cut(pair, "=")
		d, err := time.ParseDuration(dur)
		if !ok || name == "" || err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not name=duration, like compactor=15s", pair)
		}
		out[name] = d
	}
	return out, nil
}

// Names lists the names of Durations' result, sorted.
func Names(leases map[string]time.Duration) []string {
	out := make([]string, 0, len(leases))
	for n := range leases {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// renewer is Client's renewal loop: it calls renew every d/3, and returns nil when ctx ends, or an error once
// renew refused (the lease is someone else's) or has failed for 2d/3, by
// when the lease may have expired for the others. Client-go's leader
// election renews on the same schedule.
func renewer(ctx context.Context, d time.Duration, renew func(ctx context.Context) (refused bool, err error)) error {
	tick := time.NewTicker(d / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, d/3)
		refused, err := renew(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case refused:
			return err
		case err == nil:
			last = time.Now()
		case time.Since(last) > 2*d/3:
			return fmt.Errorf("not renewed for %s: %w", time.Since(last).Round(time.Millisecond), err)
		}
	}
}
