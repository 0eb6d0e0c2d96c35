package forward

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// transport carries bodyless requests (GET, HEAD, DELETE without a body)
// to a backend on the calling goroutine, over kept-alive connections,
// writing and reading HTTP/1.1 with net/http's own Request.Write and
// ReadResponse. http.Transport runs a reader and a writer goroutine per
// connection, and handing each request between three goroutines costs a
// router on a busy core about a third of its CPU. Everything else (bodies,
// which must stream both ways at once, upgrades, TLS) goes to the fallback.
type transport struct {
	fallback http.RoundTripper
	pool     *connPool
}

// NewTransport returns a transport like the one a Proxy with a nil
// Transport uses, with a connection pool of its own, for other clients of
// backends (a scatter/gather root, say). It carries requests without a body
// itself, on the calling goroutine, and the others with an http.Transport
// sized for proxying.
func NewTransport() http.RoundTripper {
	return &transport{fallback: newHTTPTransport(), pool: newConnPool()}
}

// newHTTPTransport is an http.Transport for talking to backends: it keeps
// enough idle connections per backend that a busy router does not churn
// sockets.
func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = 512
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = false
	// Backends are the app's own processes: never through the HTTP proxy
	// a pod's environment may name for the outside world, as RoundTrip's
	// own path for bodyless requests never does.
	t.Proxy = nil
	// The dialer of DefaultTransport, and a bound on unacknowledged sends
	// (see backendUserTimeout).
	t.DialContext = newDialer(30 * time.Second).DialContext
	// Pass Accept-Encoding through as the client sent it: the transport
	// neither asks backends for gzip on its own nor unzips their answers,
	// work that changed nothing a client sees.
	t.DisableCompression = true
	return t
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || (req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 || req.Header.Get("Upgrade") != "" {
		return t.fallback.RoundTrip(req)
	}
	host := req.URL.Host
	for {
		c, reused, err := t.pool.get(req.Context(), host)
		if err != nil {
			return nil, err
		}
		if reused && t.pool.closedByPeer(host, c, false) {
			c.Close() // closed meanwhile, or holding bytes nobody asked for
			continue
		}
		resp, err := t.exchange(req, c)
		if err == nil {
			return resp, nil
		}
		c.Close()
		if reused {
			t.pool.failed(host, err)
		}
		// A kept-alive connection the backend closed as the request went
		// out fails before a byte of an answer: the request goes again, if
		// the backend cannot have acted on it (not written whole) or may
		// act twice (idempotent), as http.Transport does. A backend that
		// drains closes all its idle connections at once, so the next
		// pooled one may fail too: each failure closes one, and a fresh
		// connection's failure is final.
		var unanswered *noAnswerError
		if !reused || req.Context().Err() != nil || !errors.As(err, &unanswered) ||
			(unanswered.written && !idempotent(req.Method)) {
			return nil, err
		}
	}
}

// noAnswerError is a failed exchange that read no byte of an answer.
type noAnswerError struct {
	err     error
	written bool // the request was written whole
}

func (e *noAnswerError) Error() string { return e.err.Error() }
func (e *noAnswerError) Unwrap() error { return e.err }

func (t *transport) exchange(req *http.Request, c *backendConn) (*http.Response, error) {
	stop := context.AfterFunc(req.Context(), func() { c.SetDeadline(time.Unix(1, 0)) })
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err == nil {
		_, err = c.br.Peek(1)
		if err != nil {
			err = &noAnswerError{err: err, written: true}
		}
	} else {
		err = &noAnswerError{err: err}
	}
	if err != nil {
		stop()
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, err
	}
	resp, err := readFinalResponse(c.br, req)
	if err != nil {
		stop()
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, err
	}
	resp.Body = &hopBody{ReadCloser: resp.Body, t: t, c: c, host: req.URL.Host, stop: stop,
		reusable: !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols}
	return resp, nil
}

// hopBody returns its connection to the pool once the answer has been read
// to the end, and closes it otherwise.
type hopBody struct {
	io.ReadCloser
	t        *transport
	c        *backendConn
	host     string
	stop     func() bool
	reusable bool
	eof      bool
	once     sync.Once
}

func (b *hopBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *hopBody) Close() error {
	b.once.Do(func() {
		err := b.ReadCloser.Close()
		// stop reports false when the request was cancelled meanwhile.
		if b.stop() && b.eof && b.reusable && err == nil && b.c.br.Buffered() == 0 {
			b.c.SetDeadline(time.Time{})
			b.t.pool.put(b.host, b.c, endUnsure)
			return
		}
		b.c.Close()
	})
	return nil
}

// readFinalResponse reads the answer to req, passing informational ones
// (103 Early Hints) to the request's trace as http.Transport does, which is
// how ReverseProxy relays them.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
		if n == 5 {
			return nil, errors.New("more than 5 informational answers")
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}
