package forward

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// connPool keeps idle HTTP/1.1 connections to backends, by host:port, for
// the code that speaks HTTP/1.1 to backends itself: the transport and the
// lane.
type connPool struct {
	dialer      *dialer
	maxIdle     int           // per host
	idleTimeout time.Duration // how long an unused connection is kept

	mu       sync.Mutex
	idle     map[string][]*backendConn // per host, oldest first
	sweeping bool                      // a sweep is scheduled
	// quiet counts, per host, the looks after a bodiless answer that found
	// nothing; noisyHost marks a host that wrote after one (bodilessTrust).
	quiet map[string]int
}

func newConnPool() *connPool {
	return &connPool{
		dialer:      newDialer(5 * time.Second),
		maxIdle:     512,
		idleTimeout: 90 * time.Second, // as newHTTPTransport's
		idle:        map[string][]*backendConn{},
		quiet:       map[string]int{},
	}
}

// backendConn is one connection to a backend with its buffers, which it
// holds only while it is not in the pool.
type backendConn struct {
	net.Conn
	rw        io.ReadWriter // under br and bw
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	ended     answerEnd // how the answer before idleSince ended
	// quietHost: the pool had seen enough bodiless answers from this
	// connection's host followed by nothing (bodilessTrust) when it
	// handed the connection out.
	quietHost bool
}

// answerEnd is how the last answer on a kept-alive connection ended,
// which tells whether a look at it may be skipped (closedByPeer).
type answerEnd uint8

const (
	// endUnsure: any other end, such as a HEAD answer (naive servers write
	// a body on those), or the transport's.
	endUnsure answerEnd = iota
	// endFramed: a Content-Length or chunked body, read whole. Bytes after
	// it would come from a broken backend.
	endFramed
	// endBodiless: a 204 or 304 answer, which has no body by definition;
	// some servers write one anyway, in a write of its own after the head.
	endBodiless
)

// bodilessTrust is how many looks after a bodiless answer from a host
// must find nothing before the pool stops looking after its bodiless
// answers. A host seen writing after one (a look found bytes, or the next
// answer began with bytes that were none) is looked at again for good.
const (
	bodilessTrust = 8
	noisyHost     = -1 << 30
)

// trustIdle is how long after a framed answer a kept-alive connection is
// taken for open without looking at it: looking is a system call, on a
// busy connection one per request and a twentieth of a small request's
// cost. Backends close an idle connection after seconds (net/http's
// IdleTimeout, nginx's keepalive_timeout), or at once when they drain; a
// request that goes again on another connection when its answer does not
// come covers the latter.
const trustIdle = 100 * time.Millisecond

func (c *backendConn) takeBuffers() {
	c.br, c.bw = getReader(&answerReaders, c.rw), getWriter(&requestWriters, c.rw)
}

// dropBuffers gives c's buffers back, which must hold nothing.
func (c *backendConn) dropBuffers() {
	c.br.Reset(nil)
	c.bw.Reset(nil)
	answerReaders.Put(c.br)
	requestWriters.Put(c.bw)
	c.br, c.bw = nil, nil
}

// get returns an idle connection to host, or dials one. reused tells which:
// a kept-alive connection may have been closed by the backend meanwhile.
func (p *connPool) get(ctx context.Context, host string) (c *backendConn, reused bool, err error) {
	p.mu.Lock()
	if cs := p.idle[host]; len(cs) > 0 {
		c := cs[len(cs)-1]
		p.idle[host] = cs[:len(cs)-1]
		c.quietHost = p.quiet[host] >= bodilessTrust
		p.mu.Unlock()
		c.takeBuffers()
		return c, true, nil
	}
	p.mu.Unlock()
	nc, err := p.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	return newBackendConn(nc), false, nil
}

func newBackendConn(nc net.Conn) *backendConn {
	c := &backendConn{Conn: nc, rw: newSysConn(nc)}
	c.takeBuffers()
	return c
}

// put keeps c for the next request to host, or closes it when enough are
// kept already. c must hold no byte unread or unsent; ended tells how its
// last answer ended.
func (p *connPool) put(host string, c *backendConn, ended answerEnd) {
	c.dropBuffers()
	c.idleSince, c.ended = time.Now(), ended
	p.mu.Lock()
	if len(p.idle[host]) < p.maxIdle {
		p.idle[host] = append(p.idle[host], c)
		c = nil
		if !p.sweeping {
			p.sweeping = true
			time.AfterFunc(p.idleTimeout, p.sweep)
		}
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// failed learns from err, the failure of a kept-alive connection to host.
// A connection whose sends went unacknowledged for backendUserTimeout
// (ETIMEDOUT: a backend cut off the network, its host gone) leads where the
// other idle ones to host lead: they are closed, so that a request that
// goes again dials at once rather than waiting that long on each in turn.
func (p *connPool) failed(host string, err error) {
	if !errors.Is(err, syscall.ETIMEDOUT) {
		return
	}
	p.mu.Lock()
	cs := p.idle[host]
	delete(p.idle, host)
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// closeIdle closes every kept connection, when the router stops.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*backendConn{}
	p.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.Close()
		}
	}
}

// sweep closes the connections unused for idleTimeout; after a burst of
// load a router would otherwise keep hundreds of them open for good. It
// runs only while some are kept.
func (p *connPool) sweep() {
	cutoff := time.Now().Add(-p.idleTimeout)
	var stale []*backendConn
	p.mu.Lock()
	for host, cs := range p.idle {
		n := 0
		for n < len(cs) && cs[n].idleSince.Before(cutoff) {
			n++
		}
		stale = append(stale, cs[:n]...)
		if n == len(cs) {
			delete(p.idle, host)
			delete(p.quiet, host) // the addresses of a resolved set come and go
		} else if n > 0 {
			p.idle[host] = append([]*backendConn(nil), cs[n:]...)
		}
	}
	if p.sweeping = len(p.idle) > 0; p.sweeping {
		time.AfterFunc(p.idleTimeout/2, p.sweep)
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.Close()
	}
}

// writeRequest writes a request's head and its body, in one system call
// where the connection can.
func (c *backendConn) writeRequest(head, body []byte) error {
	_, err := writeBoth(c.rw, head, body)
	return err
}

// ask writes a whole request, as writeRequest does, and waits for the
// answer's first bytes where the connection can (sysConn.writevAwait).
func (c *backendConn) ask(head, body []byte) error {
	if wa, ok := c.rw.(interface {
		writevAwait(a, b []byte) (int, error)
	}); ok {
		_, err := wa.writevAwait(head, body)
		return err
	}
	return c.writeRequest(head, body)
}

// writeBoth writes a, then b, to w: in one system call where w can
// (sysConn.writev), else as net.Buffers does. n counts the bytes of both.
func writeBoth(w io.Writer, a, b []byte) (n int, err error) {
	if wv, ok := w.(interface {
		writev(a, b []byte) (int, error)
	}); ok {
		return wv.writev(a, b)
	}
	bufs := net.Buffers{a, b}
	m, err := bufs.WriteTo(w)
	return int(m), err
}

// closedByPeer reports whether the backend at host has closed c, or sent
// something unasked, while it was idle: such a connection must not carry a
// request. For a request that may go again on another connection (retry),
// a connection whose answer ended less than trustIdle ago is not looked
// at when that answer was framed, or bodiless from a quiet host.
func (p *connPool) closedByPeer(host string, c *backendConn, retry bool) bool {
	if c.br.Buffered() > 0 {
		return true
	}
	fresh := retry && time.Since(c.idleSince) < trustIdle
	if fresh && (c.ended == endFramed || c.ended == endBodiless && c.quietHost) {
		return false
	}
	pc, ok := c.rw.(interface{ peerClosed() bool })
	closed := ok && pc.peerClosed()
	if ok && fresh && c.ended == endBodiless {
		// Within trustIdle, what a look finds is a body written after the
		// head, not an idle close.
		if closed {
			p.noisy(host)
		} else {
			p.mu.Lock()
			p.quiet[host]++
			p.mu.Unlock()
		}
	}
	return closed
}

// noisy marks host as a backend that writes after a bodiless answer.
func (p *connPool) noisy(host string) {
	p.mu.Lock()
	p.quiet[host] = noisyHost
	p.mu.Unlock()
}
