package patterns

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/patterns/forward"
)

// DefaultGrace bounds how long Serve waits for in-flight requests.
const DefaultGrace = 30 * time.Second

// How long a client may take to send a request head, and to send its next
// request on a kept-alive connection; a router's lane keeps them too.
const (
	readHeaderTimeout = 10 * time.Second
	clientIdleTimeout = 2 * time.Minute
)

// Serve serves h on ln until ctx ends, then drains: /readyz starts failing,
// no new connection is accepted, idle ones are closed, and in-flight
// requests finish within grace. A request that reaches a connection
// accepted before the drain is answered too, with "Connection: close"
// (see forward.Graceful): a program kiln replaces in place shares its
// socket with its successor until it exits.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: clientIdleTimeout}
	// Every handler of this package is a frontend; another is served as it is.
	f, _ := h.(*frontend)
	var serve func(net.Listener) error
	var shutdown func(context.Context) error
	if f != nil && f.proxy != nil {
		serve = func(ln net.Listener) error { return f.proxy.Serve(ln, srv) }
		shutdown = f.proxy.Shutdown
	} else {
		g := forward.NewGraceful(srv)
		serve, shutdown = g.Serve, g.Shutdown
	}
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if f != nil {
		f.Drain()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
