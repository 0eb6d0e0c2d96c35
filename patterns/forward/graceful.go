package forward

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// freshGrace is how long a stopping server waits for the first request of
// a connection it has accepted, as http.Server.Shutdown does.
const freshGrace = 5 * time.Second

// Graceful serves an http.Server and stops it as http.Server.Shutdown
// does, without Shutdown's one gap: once Shutdown has begun, net/http
// drops unanswered any request it reads, even on a connection it accepted
// before. That connection is new, so the client's transport does not
// retry, and the client sees EOF. The gap is wide where a pod's socket
// outlives the program that serves it: during a roll, the old program
// accepts until its last moment, beside the new one.
type Graceful struct {
	srv *http.Server

	mu       sync.Mutex
	conns    map[net.Conn]connState
	lns      []net.Listener
	serving  sync.WaitGroup
	stopping bool
}

// connState is a connection's state and when it came to it.
type connState struct {
	state http.ConnState
	since time.Time
}

// NewGraceful wraps srv, whose ConnState hook it takes over (calling the
// one srv had). Serve srv through the Graceful only.
func NewGraceful(srv *http.Server) *Graceful {
	g := &Graceful{srv: srv, conns: map[net.Conn]connState{}}
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		g.track(c, st)
		if hook != nil {
			hook(c, st)
		}
	}
	return g
}

func (g *Graceful) track(c net.Conn, st http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(g.conns, c)
	default:
		g.conns[c] = connState{st, time.Now()}
	}
}

// Serve serves ln with the server until Shutdown, and returns
// http.ErrServerClosed then, as http.Server.Serve does.
func (g *Graceful) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.stopping {
		g.mu.Unlock()
		return http.ErrServerClosed
	}
	g.lns = append(g.lns, ln)
	g.serving.Add(1)
	g.mu.Unlock()
	defer g.serving.Done()
	err := g.srv.Serve(rawListener{ln})
	if g.isStopping() {
		return http.ErrServerClosed
	}
	return err
}

// rawListener hands net/http connections that read and write with raw
// system calls (serverConn).
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return serverConn(c), nil
}

func (g *Graceful) isStopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stopping
}

// Shutdown stops accepting and closes idle connections; every other
// connection gets its next request answered, with "Connection: close",
// and is closed then. A connection that has sent nothing is waited for as
// long as net/http waits (5 s from its accept). When ctx ends first,
// Shutdown closes what is left and returns ctx's error.
func (g *Graceful) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.stopping = true
	lns := g.lns
	g.mu.Unlock()
	var errs []error
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	// Once Serve has returned, each connection it accepted is tracked: the
	// hook runs for a new connection before Serve accepts the next.
	select {
	case <-waitGroup(&g.serving):
	case <-ctx.Done():
	}
	g.srv.SetKeepAlivesEnabled(false)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for g.closeQuiet() > 0 {
		select {
		case <-ctx.Done():
			g.srv.Close()
			return ctx.Err()
		case <-poll.C:
		}
	}
	g.srv.Close() // nothing is left; later Serves return at once
	return errors.Join(errs...)
}

// closeQuiet closes the connections that have nothing coming: the idle
// ones, and the new ones silent for freshGrace. It returns how many are
// left.
func (g *Graceful) closeQuiet() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c, s := range g.conns {
		if s.state == http.StateIdle || s.state == http.StateNew && time.Since(s.since) > freshGrace {
			c.Close()
			delete(g.conns, c)
		}
	}
	return len(g.conns)
}

// waitGroup returns a channel closed once wg's count is zero.
func waitGroup(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}
