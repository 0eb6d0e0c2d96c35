package patterns

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// connPool keeps idle HTTP/1.1 connections to backends, by host:port, for
// the code that speaks HTTP/1.1 to backends itself: hopTransport and the
// lane.
type connPool struct {
	dialer  net.Dialer
	maxIdle int // per host

	mu   sync.Mutex
	idle map[string][]*backendConn
}

func newConnPool() *connPool {
	return &connPool{
		dialer:  net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle: 512,
		idle:    map[string][]*backendConn{},
	}
}

// backendConn is one connection to a backend with its buffers.
type backendConn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// get returns an idle connection to host, or dials one. reused tells which:
// a kept-alive connection may have been closed by the backend meanwhile.
func (p *connPool) get(ctx context.Context, host string) (c *backendConn, reused bool, err error) {
	p.mu.Lock()
	if cs := p.idle[host]; len(cs) > 0 {
		c := cs[len(cs)-1]
		p.idle[host] = cs[:len(cs)-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	nc, err := p.dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	rw := newSysConn(nc)
	return &backendConn{Conn: nc, br: bufio.NewReaderSize(rw, 4096), bw: bufio.NewWriterSize(rw, 4096)}, false, nil
}

// put keeps c for the next request to host, or closes it when enough are
// kept already.
func (p *connPool) put(host string, c *backendConn) {
	p.mu.Lock()
	if len(p.idle[host]) < p.maxIdle {
		p.idle[host] = append(p.idle[host], c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}
