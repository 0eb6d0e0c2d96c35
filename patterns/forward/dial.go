package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// How long a backend that cannot be reached yet is dialled again, how
// often, and how long a backend that stayed out of reach for that long is
// remembered as down.
const (
	dialPatience   = 5 * time.Second
	redialFirst    = 20 * time.Millisecond
	redialMost     = 500 * time.Millisecond
	downRemembered = time.Minute
)

// dialer dials a backend again, for a while, when a dial fails in a way
// that passes. A backend being replaced (a process restarted, a pod
// rescheduled under the same DNS name) refuses connections, or its name
// does not resolve yet or still resolves to its old address (DNS answers
// are cached for seconds), for a moment. Nothing was sent, so any request
// may wait for it rather than fail. A backend that stays out of reach for
// the whole patience, or for the whole of a request's deadline, is
// remembered as down: until a dial to it succeeds, or for a minute, each
// request dials it once, so a backend down for good does not hold every
// request.
type dialer struct {
	net.Dialer
	patience time.Duration

	mu   sync.Mutex
	down map[string]time.Time // host:port → when patience ran out
}

func newDialer(timeout time.Duration) *dialer {
	return &dialer{
		Dialer:   net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: dialControl},
		patience: dialPatience,
		down:     map[string]time.Time{},
	}
}

// DialContext dials host, again while the failure passes, for at most
// the dialer's patience and while ctx lasts. When it gives up, the error
// is the last dial's, so that a caller whose deadline ended meanwhile can
// still tell an unreachable backend from a slow one.
func (d *dialer) DialContext(ctx context.Context, network, host string) (net.Conn, error) {
	start := time.Now()
	wait := redialFirst
	for tries := 1; ; tries++ {
		c, err := d.Dialer.DialContext(ctx, network, host)
		if err == nil {
			if tries > 1 || d.wasDown(host) {
				d.setDown(host, false)
			}
			return c, nil
		}
		if !Unreachable(err) || d.wasDown(host) {
			return nil, err
		}
		left := d.patience - time.Since(start)
		giveUp := ctx.Err() != nil || left <= 0
		if !giveUp {
			t := time.NewTimer(min(wait, left))
			select {
			case <-ctx.Done():
				t.Stop()
				giveUp = true
			case <-t.C:
			}
		}
		if giveUp {
			d.setDown(host, true)
			if tries > 1 {
				err = fmt.Errorf("%w (%d dials in %s)", err, tries, time.Since(start).Round(time.Millisecond))
			}
			return nil, err
		}
		wait = min(2*wait, redialMost)
	}
}

func (d *dialer) wasDown(host string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.down[host]
	return ok && time.Since(at) < downRemembered
}

// setDown marks host down or up; marking forgets the hosts down for
// longer than downRemembered (a resolved set's addresses come and go).
func (d *dialer) setDown(host string, down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !down {
		delete(d.down, host)
		return
	}
	now := time.Now()
	for h, at := range d.down {
		if now.Sub(at) >= downRemembered {
			delete(d.down, h)
		}
	}
	d.down[host] = now
}

// Unreachable reports whether err is, or wraps, a failed dial that may
// succeed if tried again soon: nothing listens there yet, or the address
// or name is not there yet. The dialer of a Proxy or NewTransport tries
// those again. A dial that timed out is not one: it has waited long
// enough already.
func Unreachable(err error) bool {
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok {
		return !dnsErr.IsTimeout && (dnsErr.IsNotFound || dnsErr.IsTemporary)
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
