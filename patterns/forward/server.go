package forward

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Serve accepts connections on ln and serves each with the lane until a
// request comes that the lane does not take; srv serves that connection
// then, from that request on, with its handler (which is usually p, or a
// handler in front of p). The lane keeps srv's ReadHeaderTimeout and
// IdleTimeout (or its ReadTimeout where they are zero, as net/http does);
// zero means none. Serve returns http.ErrServerClosed after Shutdown.
//
// A Proxy with a Transport has no lane: srv alone serves ln then.
func (p *Proxy) Serve(ln net.Listener, srv *http.Server) error {
	p.init()
	s := newServer(p, srv, ln)
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.servers = append(p.servers, s)
	}
	p.mu.Unlock()
	switch {
	case closed:
		return http.ErrServerClosed
	case p.pool == nil:
		return s.g.Serve(ln)
	}
	return s.serve()
}

// Shutdown stops what Serve serves, as http.Server.Shutdown does: it stops
// accepting, closes idle connections, and waits for the others to finish
// their request; a connection accepted but not yet heard from gets its
// first request answered (see Graceful). When ctx ends first it closes
// them too and returns ctx's error.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.init()
	p.mu.Lock()
	p.closed = true
	servers := p.servers
	p.mu.Unlock()
	var errs []error
	for _, s := range servers {
		if p.pool != nil {
			if err := s.shutdown(ctx); err != nil {
				s.srv.Close()
				errs = append(errs, err)
				continue
			}
		}
		errs = append(errs, s.g.Shutdown(ctx))
	}
	if p.pool != nil {
		p.pool.closeIdle()
	}
	return errors.Join(errs...)
}

// server serves one listener with the lane, and hands the connections the
// lane gives up to srv, through the handoff listener, with the bytes
// already read.
type server struct {
	p             *Proxy
	srv           *http.Server
	g             *Graceful // serves srv
	ln            net.Listener
	hand          *handoffListener
	idleTimeout   time.Duration // 0: none
	headerTimeout time.Duration // for a request's head; 0: none

	// next hands a new connection to a worker waiting for one (see work);
	// idleWorkers counts those.
	next        chan *laneConn
	idleWorkers atomic.Int32

	// accepted is closed once the accept loop has returned: shutdown waits
	// for it, so that a connection accepted as the listener closed is
	// served like the others rather than dropped unanswered.
	accepted chan struct{}

	mu       sync.Mutex
	conns    map[*laneConn]struct{}
	stopping bool // the listener is being closed on purpose
	closing  bool
	sweeping bool // a sweep of idle connections is scheduled
	wg       sync.WaitGroup
}

func newServer(p *Proxy, srv *http.Server, ln net.Listener) *server {
	s := &server{p: p, srv: srv, g: NewGraceful(srv), ln: ln, hand: newHandoffListener(ln.Addr()), accepted: make(chan struct{}), next: make(chan *laneConn), conns: map[*laneConn]struct{}{}}
	s.headerTimeout, s.idleTimeout = srv.ReadHeaderTimeout, srv.IdleTimeout
	if s.headerTimeout <= 0 {
		s.headerTimeout = srv.ReadTimeout
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = srv.ReadTimeout
	}
	return s
}

// serve accepts connections until shutdown; it returns
// http.ErrServerClosed then, like http.Server.Serve.
func (s *server) serve() error {
	defer close(s.accepted)
	defer close(s.next)
	go s.g.Serve(s.hand)
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isStopping() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				s.srv.Close()
				return err
			}
			// Out of file descriptors, say: wait, as http.Server does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		lc := newLaneConn(c, s.p, s.headerTimeout)
		if !s.track(lc) {
			c.Close()
			continue
		}
		select {
		case s.next <- lc:
		default:
			go s.work(lc)
		}
	}
}

// maxIdleWorkers bounds the goroutines kept waiting for a connection.
const maxIdleWorkers = 256

// work serves lc, then waits for the next connection rather than end: a
// goroutine per connection costs the runtime its creation and the growth of
// its stack, a few of every hundred microseconds a router spends on a
// connection that carries one request (bench/run shard, close). Past
// maxIdleWorkers waiting, it ends; all end when the accept loop does.
func (s *server) work(lc *laneConn) {
	for {
		s.serveConn(lc)
		if s.idleWorkers.Add(1) > maxIdleWorkers {
			s.idleWorkers.Add(-1)
			return
		}
		var ok bool
		lc, ok = <-s.next
		s.idleWorkers.Add(-1)
		if !ok {
			return
		}
	}
}

func (s *server) track(lc *laneConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[lc] = struct{}{}
	lc.idleSince = time.Now()
	s.wg.Add(1)
	if !s.sweeping && s.idleTimeout > 0 {
		s.sweeping = true
		time.AfterFunc(s.idleTimeout/2, s.sweep)
	}
	return true
}

// sweep closes the connections idle for idleTimeout, as http.Server does
// with its IdleTimeout. It runs only while there are connections.
func (s *server) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := time.Now().Add(-s.idleTimeout)
	for lc := range s.conns {
		if lc.idle && lc.idleSince.Before(cutoff) {
			lc.SetReadDeadline(aLongTimeAgo) // wakes its goroutine, which closes it
		}
	}
	if s.sweeping = len(s.conns) > 0 && !s.closing; s.sweeping {
		time.AfterFunc(s.idleTimeout/2, s.sweep)
	}
}

func (s *server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// setIdle marks lc as waiting for a request, or not; it reports whether
// the server is shutting down.
func (s *server) setIdle(lc *laneConn, idle bool) (closing bool) {
	s.mu.Lock()
	lc.idle = idle
	lc.fresh = false
	if idle {
		lc.idleSince = time.Now()
	}
	closing = s.closing
	s.mu.Unlock()
	if closing && !idle {
		// Shutdown may have woken this connection's read just as a request
		// arrived: serve that request, then close.
		lc.SetReadDeadline(time.Time{})
	}
	return closing
}

func (s *server) serveConn(lc *laneConn) {
	handedOff := false
	defer func() {
		// A panic (in Pick, say) ends this connection only, as it would on
		// net/http.
		r := recover()
		if r != nil && r != http.ErrAbortHandler {
			s.p.log.Error("panic serving a request", "client", lc.remote, "panic", r, "stack", string(debug.Stack()))
		}
		s.mu.Lock()
		delete(s.conns, lc)
		s.mu.Unlock()
		if !handedOff {
			lc.Close()
		}
		if !handedOff && r == nil {
			// No one holds it any more: a streamed body's goroutine ended
			// with the exchange (a panic may have cut that short), and a
			// handed-over connection keeps its reader.
			lc.release()
		} else {
			lc.releaseWriter()
			lc.releaseBody()
		}
		s.wg.Done()
	}()
	var lr laneRequest
	// A new connection gets as long for its first request's head as
	// net/http gives it; later waits are the idle timeout's.
	deadline, err := lc.peekFirst(s.headerTimeout)
	for first := true; ; first = false {
		if !first {
			_, err = lc.br.Peek(1)
		}
		if err != nil {
			return // closed, silent, or woken by shutdown while idle
		}
		closing := s.setIdle(lc, false)
		ok, err := lc.readRequest(&lr)
		if err != nil {
			return
		}
		if deadline {
			lc.SetReadDeadline(time.Time{})
			deadline = false
		}
		var b *Backend
		if ok {
			b, err = s.p.Pick(lr.req)
		}
		if !ok || errors.Is(err, ErrUseHandler) {
			handedOff = s.hand.give(&bufferedConn{Conn: lc.Conn, r: lc.br})
			return
		}
		lc.br.Discard(lr.size)
		if lr.streamed && lr.length <= bufferedBody && lc.readBody(&lr) != nil {
			return // the client hung up, or went silent, mid-body
		}
		lc.writer()
		keep := s.p.forward(lc, &lr, b, err, closing)
		lc.releaseBody()
		if !keep || s.setIdle(lc, true) {
			return
		}
		if lc.br.Buffered() == 0 {
			lc.releaseWriter() // until the next request comes
		}
	}
}

// shutdown stops accepting, closes idle connections, lets the others finish
// their request and waits for them until ctx ends.
func (s *server) shutdown(ctx context.Context) error {
	// Stop accepting first, and only then close what is idle: a client
	// whose connection was accepted as the listener closed has sent
	// nothing yet, and would get no answer and no reason to retry.
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.ln.Close()
	select {
	case <-s.accepted:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.closing = true
	for lc := range s.conns {
		switch {
		case lc.fresh:
			// Its client may be sending its first request now, and would
			// not retry it on a new connection: wait for it as net/http
			// does.
			lc.SetReadDeadline(lc.idleSince.Add(freshGrace))
		case lc.idle:
			lc.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.mu.Unlock()
	done := waitGroup(&s.wg)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for lc := range s.conns {
			lc.Close()
			if bc := lc.backend.Load(); bc != nil {
				bc.SetDeadline(aLongTimeAgo) // wakes a relay waiting on it
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return ctx.Err()
	}
}

// handoffListener passes connections the lane gives up to an http.Server.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands c over; it reports false, and c stays the caller's, once the
// listener is closed.
func (h *handoffListener) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }

// bufferedConn is a connection whose first bytes were read into r already.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite lets http.Server half-close the connection as it does a TCP one.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
