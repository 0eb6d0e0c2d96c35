package patterns

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// laneServer accepts a router's connections and serves each with the lane
// until a request comes that the lane does not take; that connection then
// goes to srv, through the handoff listener, with the bytes already read.
type laneServer struct {
	lane          *lane
	srv           *http.Server
	ln            net.Listener
	hand          *handoffListener
	idleTimeout   time.Duration
	headerTimeout time.Duration // for a new connection's first request

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

func newLaneServer(l *lane, srv *http.Server, ln net.Listener) *laneServer {
	return &laneServer{lane: l, srv: srv, ln: ln, hand: newHandoffListener(ln.Addr()), idleTimeout: clientIdleTimeout, headerTimeout: readHeaderTimeout, accepted: make(chan struct{}), conns: map[*laneConn]struct{}{}}
}

// serve accepts connections until shutdown; it returns
// http.ErrServerClosed then, like http.Server.Serve.
func (s *laneServer) serve() error {
	defer close(s.accepted)
	go s.srv.Serve(s.hand)
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
		lc := newLaneConn(c, s.lane.rt.use)
		if !s.track(lc) {
			c.Close()
			continue
		}
		go s.serveConn(lc)
	}
}

func (s *laneServer) track(lc *laneConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[lc] = struct{}{}
	lc.idleSince = time.Now()
	s.wg.Add(1)
	if !s.sweeping {
		s.sweeping = true
		time.AfterFunc(s.idleTimeout/2, s.sweep)
	}
	return true
}

// sweep closes the connections idle for idleTimeout, as http.Server does
// with its IdleTimeout. It runs only while there are connections.
func (s *laneServer) sweep() {
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

func (s *laneServer) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// setIdle marks lc as waiting for a request, or not; it reports whether
// the server is shutting down.
func (s *laneServer) setIdle(lc *laneConn, idle bool) (closing bool) {
	s.mu.Lock()
	lc.idle = idle
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

func (s *laneServer) serveConn(lc *laneConn) {
	handedOff := false
	defer func() {
		// A panic (in a key function, say) ends this connection only, as
		// it would on net/http.
		if r := recover(); r != nil && r != http.ErrAbortHandler {
			s.lane.log.Error("panic serving a request", "client", lc.remote, "panic", r, "stack", string(debug.Stack()))
		}
		s.mu.Lock()
		delete(s.conns, lc)
		s.mu.Unlock()
		if !handedOff {
			lc.Close()
		}
		s.wg.Done()
	}()
	var lr laneRequest
	// A new connection gets as long for its first request's head as
	// net/http gives it; later waits are the idle timeout's.
	lc.SetReadDeadline(time.Now().Add(s.headerTimeout))
	for first := true; ; first = false {
		if _, err := lc.br.Peek(1); err != nil {
			return // closed, silent, or woken by shutdown while idle
		}
		closing := s.setIdle(lc, false)
		ok, err := lc.readRequest(&lr)
		if err != nil {
			return
		}
		if first {
			lc.SetReadDeadline(time.Time{})
		}
		if !ok {
			handedOff = s.hand.give(&bufferedConn{Conn: lc.Conn, r: lc.br})
			return
		}
		if !s.lane.forward(lc, &lr, closing) || s.setIdle(lc, true) {
			return
		}
	}
}

// shutdown stops accepting, closes idle connections, lets the others finish
// their request and waits for them until ctx ends.
func (s *laneServer) shutdown(ctx context.Context) error {
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
		if lc.idle {
			lc.SetReadDeadline(aLongTimeAgo)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.lane.pool.closeIdle()
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
