package forward

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
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
}

func newConnPool() *connPool {
	return &connPool{
		dialer:      newDialer(5 * time.Second),
		maxIdle:     512,
		idleTimeout: 90 * time.Second, // as newHTTPTransport's
		idle:        map[string][]*backendConn{},
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
}

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
// kept already. c must hold no byte unread or unsent.
func (p *connPool) put(host string, c *backendConn) {
	c.dropBuffers()
	c.idleSince = time.Now()
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
// where the connection can (sysConn.writev).
func (c *backendConn) writeRequest(head, body []byte) error {
	if w, ok := c.rw.(interface {
		writev(a, b []byte) (int, error)
	}); ok {
		_, err := w.writev(head, body)
		return err
	}
	bufs := net.Buffers{head, body}
	_, err := bufs.WriteTo(c.rw)
	return err
}

// closedByPeer reports whether the backend has closed c, or sent something
// unasked, while it was idle: such a connection must not carry a request.
func (c *backendConn) closedByPeer() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	p, ok := c.rw.(interface{ peerClosed() bool })
	return ok && p.peerClosed()
}
