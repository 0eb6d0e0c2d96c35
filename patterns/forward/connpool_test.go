package forward

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestConnPoolClosesIdleConnections: a connection unused for the idle
// timeout is closed, one in use meanwhile is kept.
func TestConnPoolClosesIdleConnections(t *testing.T) {
	closed := make(chan time.Time, 2)
	host := acceptEach(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // until the pool closes it
		closed <- time.Now()
	})
	p := newConnPool()
	p.idleTimeout = 200 * time.Millisecond
	old, _, err := p.get(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	busy, _, err := p.get(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.put(host, old, endFramed)
	select {
	case at := <-closed:
		if d := at.Sub(start); d < p.idleTimeout {
			t.Fatalf("closed after %s, before the idle timeout", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("an idle connection is still open after 2 s")
	}
	select {
	case <-closed:
		t.Fatal("the pool closed a connection in use")
	case <-time.After(3 * p.idleTimeout):
	}
	busy.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 || p.sweeping {
		t.Fatalf("after the sweep: %d hosts kept, sweeping %v", len(p.idle), p.sweeping)
	}
}

// TestConnPoolDialsAfterABackendWentSilent: once a kept-alive connection
// to a host failed with its sends unacknowledged (ETIMEDOUT, a backend cut
// off the network), the next request to that host dials, rather than
// waiting the user timeout out on each of its other idle connections; any
// other failure leaves them be.
func TestConnPoolDialsAfterABackendWentSilent(t *testing.T) {
	host := acceptEach(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	for _, tc := range []struct {
		err    error
		reused bool
	}{
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}, false},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
	} {
		p := newConnPool()
		for range 3 {
			c, _, err := p.get(context.Background(), host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p.put(host, c, endFramed)
		}
		p.failed(host, tc.err)
		c, reused, err := p.get(context.Background(), host)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if reused != tc.reused {
			t.Errorf("after a connection failed with %v, the next one reused %v, want %v", tc.err, reused, tc.reused)
		}
		p.closeIdle()
	}
}
