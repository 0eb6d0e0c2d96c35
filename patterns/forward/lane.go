package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// maxResponseHead bounds a backend's response head, as http.Transport's
// MaxResponseHeaderBytes does.
const maxResponseHead = 1 << 20

// watchAfter is how long a backend may take to answer before the lane
// starts watching the client: one that hangs up meanwhile frees the backend
// connection at once, as a cancelled request does on net/http. Quick
// answers cost no watcher.
const watchAfter = 50 * time.Millisecond

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// laneConn is one client connection served by the lane.
type laneConn struct {
	net.Conn
	rw      io.ReadWriter // under br and bw
	br      *bufio.Reader
	bw      *bufio.Writer // only while it answers: see writer
	sink    answerSink    // under bw
	p       *Proxy
	remote  string       // RemoteAddr, for the request Pick sees
	ip      string       // the client's address, for X-Forwarded-For
	request []byte       // the request in flight, copied
	body    *[]byte      // its body, when read whole past the read buffer
	scratch []byte       // a backend's response head
	out     []byte       // the head sent to the backend
	req     http.Request // Pick's, unless it keeps requests
	url     url.URL      // req's
	host    string       // the last request's Host, checked

	headerTimeout time.Duration // for a request's head and body; 0: none

	// Guarded by server.mu.
	idle      bool // waiting for a request
	fresh     bool // accepted, and no request begun yet
	idleSince time.Time

	backend atomic.Pointer[backendConn] // the one the request in flight uses

	// Watching the client while a backend is slow to answer.
	watch     *time.Timer
	watchDone chan struct{}
	waitingOn *backendConn
	gone      bool // the client hung up during the wait
}

// laneConns are lane connections that ended, kept with their buffers,
// timer and raw reader for the next: a client that opens a connection per
// request otherwise costs the router a dozen allocations per request and
// the collections that go with them (bench/run shard, close).
var laneConns = sync.Pool{New: func() any { return new(laneConn) }}

func newLaneConn(c net.Conn, p *Proxy, headerTimeout time.Duration) *laneConn {
	lc := laneConns.Get().(*laneConn)
	lc.Conn, lc.p, lc.headerTimeout = c, p, headerTimeout
	lc.rw = reuseSysConn(lc.rw, c)
	lc.br = getReader(&clientReaders, lc.rw)
	lc.idle, lc.fresh = true, true
	lc.remote = c.RemoteAddr().String()
	lc.ip, _, _ = net.SplitHostPort(lc.remote)
	return lc
}

// release gives lc, its connection over and no one else holding it, back
// to laneConns.
func (lc *laneConn) release() {
	lc.br.Reset(nil)
	clientReaders.Put(lc.br)
	lc.releaseWriter()
	lc.releaseBody()
	lc.dropLargeBuffers()
	*lc = laneConn{
		rw: lc.rw, request: lc.request[:0], scratch: lc.scratch[:0], out: lc.out[:0],
		req: http.Request{Header: lc.req.Header}, watch: lc.watch, watchDone: lc.watchDone,
	}
	if sc, ok := lc.rw.(interface{ forget() }); ok {
		sc.forget()
	}
	laneConns.Put(lc)
}

// dropLargeBuffers lets go of head buffers one huge head grew: they should
// not stay with the connection, or with the next one to reuse it.
func (lc *laneConn) dropLargeBuffers() {
	if cap(lc.scratch) > 64<<10 {
		lc.scratch = nil
	}
	if cap(lc.out) > 64<<10 {
		lc.out = nil
	}
}

// writer gives lc a write buffer for the answer it is about to send. A
// connection holds one only while it answers, which saves an idle
// connection a third of its memory (memory_test.go).
func (lc *laneConn) writer() {
	if lc.bw == nil {
		lc.sink.w = lc.rw
		lc.bw = getWriter(&answerWriters, &lc.sink)
	}
}

// releaseWriter gives lc's write buffer back once it holds nothing.
func (lc *laneConn) releaseWriter() {
	if lc.bw != nil && lc.bw.Buffered() == 0 {
		lc.bw.Reset(nil)
		answerWriters.Put(lc.bw)
		lc.bw = nil
	}
}

// awaitHead sends lr, whole, on bc and reads the backend's response head;
// if that takes a while it watches the client meanwhile and reports
// whether the client hung up.
func (lc *laneConn) awaitHead(bc *backendConn, lr *laneRequest, rh *responseHead) (gone bool, err error) {
	lc.waitingOn, lc.gone = bc, false
	if lc.watch == nil {
		lc.watchDone = make(chan struct{}, 1)
		lc.watch = time.AfterFunc(watchAfter, lc.watchClient)
	} else {
		lc.watch.Reset(watchAfter)
	}
	// The write may wait for the answer too (backendConn.ask), so the
	// watcher runs from before it.
	if err = bc.ask(lc.out, lr.body); err == nil {
		err = readResponseHead(bc.br, &lc.scratch, lr.method, rh)
	}
	if !lc.watch.Stop() {
		// The watcher runs: wake it and wait for it, so that the client
		// connection is this goroutine's again.
		lc.SetReadDeadline(aLongTimeAgo)
		<-lc.watchDone
		lc.SetReadDeadline(time.Time{})
	}
	lc.waitingOn = nil
	return lc.gone, err
}

// watchClient waits for the client to send more or hang up. A client that
// hangs up ends the wait for the backend.
func (lc *laneConn) watchClient() {
	if _, err := lc.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		lc.gone = true
		lc.waitingOn.SetReadDeadline(aLongTimeAgo)
	}
	lc.watchDone <- struct{}{}
}

// waitDeadliner is a reader that sets a read deadline only when a read has
// to wait (sysConn).
type waitDeadliner interface {
	armWaitDeadline(d time.Duration)
	disarmWaitDeadline() (set bool)
}

// peekFirst waits for a new connection's first bytes, for at most timeout
// (none if 0) from when it starts waiting, as net/http's ReadHeaderTimeout
// does from the accept. It reports whether it left a read deadline set.
// Most clients send their request with the connection: the read finds it
// at once and no deadline is set and cleared (bench/run shard, close).
func (lc *laneConn) peekFirst(timeout time.Duration) (deadline bool, err error) {
	wd, lazy := lc.rw.(waitDeadliner)
	switch {
	case timeout <= 0:
	case lazy:
		wd.armWaitDeadline(timeout)
	default:
		lc.SetReadDeadline(time.Now().Add(timeout))
		deadline = true
	}
	_, err = lc.br.Peek(1)
	if lazy && timeout > 0 {
		deadline = wd.disarmWaitDeadline()
	}
	return deadline, err
}

// peekHead returns the next request's head, from the request line to the
// empty line, without consuming it. It returns nil when the head is not a
// plain one: longer than the read buffer, or with a line not ending in CRLF.
func (lc *laneConn) peekHead() ([]byte, error) {
	deadline := false
	defer func() {
		if deadline {
			lc.SetReadDeadline(time.Time{})
		}
	}()
	for {
		buf, _ := lc.br.Peek(lc.br.Buffered())
		switch n := headEnd(buf); {
		case n > 0:
			return buf[:n], nil
		case n < 0 || len(buf) >= lc.br.Size():
			return nil, nil
		}
		// The head usually arrives in one read; only a slow one pays for a
		// deadline.
		if !deadline && lc.headerTimeout > 0 {
			lc.SetReadDeadline(time.Now().Add(lc.headerTimeout))
			deadline = true
		}
		if _, err := lc.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// readRequest reads the next plain request into lc.request and parses it
// into lr, consuming nothing: it reports false when the request is not one
// for the lane, and lr.size is what to consume when it is. The request is
// copied out of the read buffer because that buffer goes on filling while
// the request is in flight (the watcher reads the client's next bytes into
// it). A body that does not fit the read buffer with the head is left to
// stream (lr.streamed).
func (lc *laneConn) readRequest(lr *laneRequest) (bool, error) {
	head, err := lc.peekHead()
	if err != nil || head == nil {
		return false, err
	}
	lc.request = append(lc.request[:0], head...)
	if !lc.parse(lc.request, lr) {
		return false, nil
	}
	total := len(head) + int(lr.length)
	if lr.length > int64(lc.br.Size()) || total > lc.br.Size() {
		if lc.p.PickKeeps {
			return false, nil // Pick could not be given the body
		}
		lr.head, lr.body, lr.size, lr.streamed = lc.request, nil, len(head), true
		return true, nil
	}
	if lc.br.Buffered() < total {
		if lc.headerTimeout > 0 {
			lc.SetReadDeadline(time.Now().Add(lc.headerTimeout))
		}
		_, err := lc.br.Peek(total)
		lc.SetReadDeadline(time.Time{})
		if err != nil {
			return false, err
		}
	}
	buf, _ := lc.br.Peek(total)
	lc.request = append(lc.request, buf[len(head):]...)
	lr.head, lr.body, lr.size = lc.request[:len(head)], lc.request[len(head):], total
	if lc.p.PickKeeps && len(lr.body) > 0 {
		lr.req.Body = io.NopCloser(bytes.NewReader(bytes.Clone(lr.body)))
	}
	return true, nil
}

// readBody reads a body that streams, but fits a body buffer, whole into
// one: sent with the head, it takes the router a write or two and no
// goroutine, where streaming it takes a goroutine and a read and a write
// per piece (bench/run shard, put-16KB). A client gets as long as for a
// head between two of its body's reads.
func (lc *laneConn) readBody(lr *laneRequest) error {
	lc.body = bodyBuffers.Get().(*[]byte)
	b := (*lc.body)[:lr.length]
	for n := 0; n < len(b); {
		if lc.headerTimeout > 0 {
			lc.SetReadDeadline(time.Now().Add(lc.headerTimeout))
		}
		m, err := lc.br.Read(b[n:])
		if n += m; err != nil && n < len(b) {
			return err
		}
	}
	if lc.headerTimeout > 0 {
		lc.SetReadDeadline(time.Time{})
	}
	lr.body, lr.streamed = b, false
	return nil
}

// releaseBody gives back the body buffer of the request that ended.
func (lc *laneConn) releaseBody() {
	if lc.body != nil {
		bodyBuffers.Put(lc.body)
		lc.body = nil
	}
}

// headEnd returns the length of the head at the start of buf, 0 when buf
// holds no complete head yet, and -1 when a line of it does not end in CRLF.
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		if j == 0 || buf[i+j-1] != '\r' {
			return -1
		}
		if j == 1 {
			if i == 0 {
				return -1 // an empty line before the request line
			}
			return i + 2
		}
		i += j + 1
	}
}

// laneRequest is a plain request. Its byte slices point into the
// connection's copy of it (laneConn.request) and live until the next one.
type laneRequest struct {
	head     []byte
	body     []byte // all of it, unless streamed
	streamed bool   // the body, over bufferedBody, follows in the read buffer and the socket
	size     int    // of the head, and the body unless streamed, in the read buffer
	length   int64  // Content-Length
	method   string
	target   []byte
	host     []byte
	xff      []byte // X-Forwarded-For the client sent, joined
	xffSeen  bool   // it sent one, if empty
	close    bool   // the client sent Connection: close
	req      *http.Request
}

// Header kinds, for what the lane does with each request header.
const (
	hdrForward = iota
	hdrDrop    // hop-by-hop, or rewritten by the router
	hdrRefuse  // the lane leaves the request to net/http
	hdrHost
	hdrConnection
	hdrContentLength
	hdrForwardedFor
)

// requestHeaders are the request headers the lane does not forward as
// they come.
var requestHeaders = [...]struct {
	name string
	kind int
}{
	{"Host", hdrHost},
	{"Connection", hdrConnection},
	{"Content-Length", hdrContentLength},
	{"X-Forwarded-For", hdrForwardedFor},
	{"Keep-Alive", hdrDrop},
	{"Proxy-Connection", hdrDrop},
	{"Forwarded", hdrDrop},
	{"X-Forwarded-Host", hdrDrop},
	{"X-Forwarded-Proto", hdrDrop},
	{"Transfer-Encoding", hdrRefuse},
	{"Expect", hdrRefuse},
	{"Upgrade", hdrRefuse},
	{"Te", hdrRefuse},
	{"Trailer", hdrRefuse},
	{"Proxy-Authenticate", hdrRefuse},
	{"Proxy-Authorization", hdrRefuse},
}

func requestHeaderKind(name []byte) int {
	for _, h := range requestHeaders {
		if len(name) == len(h.name) && bytes.EqualFold(name, []byte(h.name)) {
			return h.kind
		}
	}
	return hdrForward
}

// nextLine splits the first line off buf, without its line end.
func nextLine(buf []byte) (line, rest []byte) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return buf, nil
	}
	return bytes.TrimSuffix(buf[:i], []byte("\r")), buf[i+1:]
}

// headerLines yields the header lines of a head: those after its first
// line, up to the empty one, without their line ends.
func headerLines(head []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		_, rest := nextLine(head)
		for {
			var line []byte
			if line, rest = nextLine(rest); len(line) == 0 || !yield(line) {
				return
			}
		}
	}
}

// splitHeader splits a header line into its name and its trimmed value.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name, value = line[:i], bytes.Trim(line[i+1:], " \t")
	for _, c := range name {
		if !httpguts.IsTokenRune(rune(c)) {
			return nil, nil, false
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

// laneMethods are the methods the lane takes; the others (CONNECT, TRACE,
// extensions) go to net/http.
var laneMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions,
	http.MethodPut, http.MethodPost, http.MethodPatch,
}

// idempotent reports whether a request may be sent again after a
// connection failed under it (RFC 9110, section 9.2.2).
func idempotent(method string) bool {
	return method != http.MethodPost && method != http.MethodPatch
}

// parse reads head into lr and reports whether the lane may forward it.
func (lc *laneConn) parse(head []byte, lr *laneRequest) bool {
	*lr = laneRequest{head: head}
	line, _ := nextLine(head)
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return false
	}
	for _, m := range laneMethods {
		if string(method) == m {
			lr.method = m
		}
	}
	if lr.method == "" {
		return false
	}
	for _, c := range target {
		// Spaces and controls are net/http's to refuse, other bytes its to
		// escape.
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	lr.target = target

	// The request Pick sees: one per connection will do unless Pick keeps
	// requests, and only a Pick that reads headers gets them.
	var h http.Header
	req, u := &lc.req, &lc.url
	switch {
	case lc.p.PickKeeps:
		h, req, u = http.Header{}, &http.Request{}, &url.URL{}
	case lc.p.PickHeaders:
		if h = lc.req.Header; h == nil {
			h = http.Header{}
		}
		clear(h)
	}
	hosts, lengths := 0, []byte(nil)
	for line := range headerLines(head) {
		name, value, ok := splitHeader(line)
		if !ok {
			return false
		}
		switch requestHeaderKind(name) {
		case hdrRefuse:
			return false
		case hdrHost:
			hosts++
			lr.host = value
		case hdrConnection:
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case bytes.EqualFold(tok, []byte("close")):
					lr.close = true
				case len(tok) == 0, bytes.EqualFold(tok, []byte("keep-alive")):
				default:
					return false // names a header to drop: rare, net/http's job
				}
			}
		case hdrContentLength:
			// Repeated, it must repeat to the letter, as for net/http.
			n, ok := parseLength(value)
			if !ok || lengths != nil && !bytes.Equal(value, lengths) {
				return false
			}
			lr.length, lengths = n, value
		case hdrForwardedFor:
			if lr.xffSeen {
				lr.xff = append(lr.xff, ", "...)
			}
			lr.xff, lr.xffSeen = append(lr.xff, value...), true
			fallthrough
		case hdrForward:
			if h != nil {
				key := textproto.CanonicalMIMEHeaderKey(string(name))
				h[key] = append(h[key], string(value))
			}
		}
	}
	if hosts != 1 {
		return false
	}
	// A connection's requests name one host, as a rule: it is checked
	// and made a string once.
	if string(lr.host) != lc.host {
		if !httpguts.ValidHostHeader(string(lr.host)) {
			return false
		}
		lc.host = string(lr.host)
	}
	uri := string(target)
	if !parseTarget(u, uri) || !cleanQuery(u.RawQuery) {
		return false // ReverseProxy drops what it cannot parse
	}
	*req = http.Request{
		Method: lr.method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, ContentLength: lr.length, Host: lc.host,
		RemoteAddr: lc.remote, RequestURI: uri, Close: lr.close,
	}
	lr.req = req
	return true
}

// parseTarget parses an origin-form request target into u, as
// url.ParseRequestURI does, and reports whether it could. A path with
// nothing to unescape or escape, and a query, are cut out of uri, with no
// URL to allocate (the most of a small request's allocations, in perf).
func parseTarget(u *url.URL, uri string) bool {
	path, query, _ := strings.Cut(uri, "?")
	*u = url.URL{Path: path, RawQuery: query}
	if strings.HasSuffix(uri, "?") || strings.IndexByte(path, '%') >= 0 || u.EscapedPath() != path {
		// A trailing "?" (ForceQuery), escapes, or bytes that
		// ParseRequestURI keeps in RawPath.
		v, err := url.ParseRequestURI(uri)
		if err != nil {
			return false
		}
		*u = *v
	}
	return true
}

// appendHead appends lr's head for the backend at host to b: the request line
// as the client sent it, the backend as Host, the end-to-end headers, and
// X-Forwarded-For, -Host and -Proto as httputil.ProxyRequest.SetXForwarded
// sets them.
func (lr *laneRequest) appendHead(b []byte, host, clientIP string) []byte {
	b = append(b, lr.method...)
	b = append(b, ' ')
	b = append(b, lr.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for line := range headerLines(lr.head) {
		name, _, _ := bytes.Cut(line, []byte(":"))
		if requestHeaderKind(name) == hdrForward {
			b = append(b, line...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	if lr.xffSeen {
		b = append(b, lr.xff...)
		b = append(b, ", "...)
	}
	b = append(b, clientIP...)
	b = append(b, "\r\nX-Forwarded-Host: "...)
	b = append(b, lr.host...)
	b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	switch {
	case lr.length > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, lr.length, 10)
	case lr.method == http.MethodPost || lr.method == http.MethodPut || lr.method == http.MethodPatch:
		// An empty body, said out loud where one is expected, as
		// http.Request.Write does.
		b = append(b, "Content-Length: 0"...)
	default:
		return append(b, "\r\n"...)
	}
	return append(b, "\r\n\r\n"...)
}

// forward serves one plain request, whose backend Pick chose (or failed
// to), and reports whether the connection may carry another.
func (p *Proxy) forward(lc *laneConn, lr *laneRequest, b *Backend, err error, closing bool) bool {
	p.served.Add(1)
	keep := !lr.close && !closing
	if err == nil && !Plain(b.URL) {
		err = fmt.Errorf("backend %s at %v: the lane reaches only http://host:port; a Proxy whose Pick returns other URLs needs a Transport", b.Name, b.URL)
	}
	if err != nil {
		// A body that streams was not read: it must not pass for the
		// next request.
		_, keep = lc.answerError(lr, "", err, keep && !lr.streamed)
		return keep
	}
	b.inflight.Add(1)
	start := time.Now()
	code, keep := p.exchange(lc, lr, b, keep)
	b.inflight.Add(-1)
	if b.Done != nil {
		b.Done(code, time.Since(start))
	}
	return keep
}

// exchange sends lr to b and relays b's answer. It returns the status code
// the client was sent and whether its connection may carry another
// request.
func (p *Proxy) exchange(lc *laneConn, lr *laneRequest, b *Backend, keep bool) (int, bool) {
	var rh responseHead
	defer lc.backend.Store(nil)
	addr := b.URL.Host
	bc, body, gone, err := p.send(lc, lr, addr, &rh)
	for n := 1; err == nil && rh.code < 200; n++ {
		// Informational answers (103 Early Hints) go out as they come.
		rh.writeTo(lc.bw, lc.scratch, p.header, "", true)
		if err = lc.bw.Flush(); err != nil {
			gone = true
			break
		}
		if err = errors.New("more than 5 informational answers"); n < 5 {
			err = readResponseHead(bc.br, &lc.scratch, lr.method, &rh)
		}
	}
	if err != nil || gone {
		if bc != nil { // it failed among informational answers
			bc.Close()
			body.finish(lc, bc)
			gone = gone || body.clientFailed()
		}
		if gone {
			return StatusClientGone, false
		}
		// Of a body that streamed, the client may have more to send.
		return lc.answerError(lr, b.Name, fmt.Errorf("%s failed: %w", b.Name, err), keep && !lr.streamed)
	}
	// An answer that comes before the body is sent whole is the last on
	// this connection: the rest of the body will not be read.
	keep = keep && rh.body != bodyUntilClose && body.sent()
	rh.writeTo(lc.bw, lc.scratch, p.header, b.Name, keep)
	lc.sink.from = bc.rw
	switch rh.body {
	case bodyLength:
		err = copyN(lc.bw, &lc.sink, bc.br, rh.length)
	case bodyChunked:
		err = copyChunked(lc.bw, &lc.sink, bc.br)
	case bodyUntilClose:
		err = copyUntilClose(lc.bw, &lc.sink, bc.br)
	}
	lc.sink.from = nil
	if err != nil {
		// The head may be out already: all the client can be told is a
		// closed connection, as net/http does when ReverseProxy aborts.
		bc.Close()
		body.finish(lc, bc)
		if _, ok := errors.AsType[clientError](err); !ok && !body.clientFailed() {
			p.log.Warn("backend failed mid-answer", "backend", b.Name, "err", err)
		}
		return rh.code, false
	}
	// A body the backend did not take whole ends both connections.
	whole := body.finish(lc, bc)
	if rh.close || rh.body == bodyUntilClose || bc.br.Buffered() > 0 || !whole {
		bc.Close()
	} else {
		p.pool.put(addr, bc, rh.ended(lr.method))
	}
	if lc.bw.Flush() != nil {
		return rh.code, false
	}
	return rh.code, keep && whole
}

// send writes lr to a connection to addr and reads the head of the answer
// into rh. gone reports that the client hung up meanwhile. A body that
// streams goes on streaming after send returns, beside the answer.
func (p *Proxy) send(lc *laneConn, lr *laneRequest, addr string, rh *responseHead) (bc *backendConn, body *bodyStream, gone bool, err error) {
	lc.dropLargeBuffers()
	// A body that streams cannot be sent twice.
	retry := idempotent(lr.method) && !lr.streamed
	lc.out = lr.appendHead(lc.out[:0], addr, lc.ip)
	for {
		var reused bool
		lc.scratch = lc.scratch[:0]
		if bc, reused, err = p.pool.get(context.Background(), addr); err != nil {
			return nil, nil, false, err
		}
		lc.backend.Store(bc)
		if reused && p.pool.closedByPeer(addr, bc, retry) {
			// Only on a connection known to be open and quiet (or, for a
			// request that may go again, one that answered in full a moment
			// ago): what cannot be sent twice must not fail there, and bytes
			// a backend sent unasked must not become the next answer.
			bc.Close()
			continue
		}
		if lr.streamed {
			// A body that streams comes after the head.
			if err = bc.writeRequest(lc.out, lr.body); err == nil {
				body = lc.streamBody(bc, lr.length)
				// No watcher: the client's bytes are the body's.
				if err = readResponseHead(bc.br, &lc.scratch, lr.method, rh); err == nil {
					return bc, body, false, nil
				}
				bc.Close()
				body.finish(lc, bc)
				return nil, nil, body.clientFailed(), err
			}
		} else if gone, err = lc.awaitHead(bc, lr, rh); err == nil && !gone {
			// A client that hung up gets no answer, however it went with
			// the backend (whose connection the watcher may have cut).
			return bc, nil, false, nil
		}
		bc.Close()
		if reused {
			p.pool.failed(addr, err)
		}
		if reused && bc.ended == endBodiless && len(lc.scratch) > 0 {
			// Bytes that are no answer, after a bodiless one: the backend
			// writes after those (a body on a 204), and its connections
			// are looked at after them from now on.
			p.pool.noisy(addr)
		}
		// A kept-alive connection the backend had closed fails before a
		// byte of an answer; an idempotent request is safe to send again.
		// A backend that drains closes all its idle connections at once,
		// so the next pooled one may fail too: each failure closes one,
		// and a fresh connection's failure is final.
		if gone || !reused || !retry || len(lc.scratch) > 0 {
			return nil, nil, gone, err
		}
	}
}

// bodyStream streams the rest of a request body from the client to the
// backend on a goroutine of its own, while the exchange reads and relays
// the answer: both ways at once, as net/http's path does with
// EnableFullDuplex.
type bodyStream struct {
	left atomic.Int64 // bytes not yet read from the client
	done chan struct{}
	err  error // once done is closed
}

// bodyBuffers are bodyStream's: reads and writes of up to 64 KB, as for
// answers (buffers.go).
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, answerSize); return &b }}

func (lc *laneConn) streamBody(bc *backendConn, n int64) *bodyStream {
	b := &bodyStream{done: make(chan struct{})}
	b.left.Store(n)
	go func() {
		defer close(b.done)
		buf := bodyBuffers.Get().(*[]byte)
		defer bodyBuffers.Put(buf)
		// What the read buffer holds first, then straight from the socket:
		// from socket to socket where the kernel can (spliceBody).
		for n > 0 {
			if lc.br.Buffered() == 0 {
				if ok, rerr, werr := spliceBody(bc.rw, lc.rw, n, b.left.Store); ok {
					b.failed(bc, rerr, werr)
					return
				}
			}
			m, err := lc.br.Read((*buf)[:min(n, int64(len(*buf)))])
			n -= int64(m)
			// Counted before the write: a backend that read the last
			// bytes may answer before this goroutine runs again, and the
			// answer's keep-alive must see the body as read.
			b.left.Store(n)
			if m > 0 {
				if _, werr := bc.rw.Write((*buf)[:m]); werr != nil {
					b.err = werr
					return
				}
			}
			if err != nil && n > 0 {
				b.failed(bc, err, nil)
				return
			}
		}
	}()
	return b
}

// failed records how a body's stream ended: rerr the client's side
// failing, werr the backend's, or neither.
func (b *bodyStream) failed(bc *backendConn, rerr, werr error) {
	switch {
	case werr != nil:
		b.err = werr
	case rerr != nil:
		if errors.Is(rerr, io.EOF) {
			rerr = io.ErrUnexpectedEOF
		}
		b.err = clientError{rerr}
		// The backend waits for the rest: end its wait.
		bc.SetReadDeadline(aLongTimeAgo)
	}
}

// finish waits for the body to end, cutting it short if the backend no
// longer takes it, and reports whether it went whole. A nil bodyStream, a
// body that did not stream, went whole.
func (b *bodyStream) finish(lc *laneConn, bc *backendConn) bool {
	if b == nil {
		return true
	}
	select {
	case <-b.done:
	default:
		// The answer is over and the body is not: cut it.
		lc.SetReadDeadline(aLongTimeAgo)
		bc.SetWriteDeadline(aLongTimeAgo)
		<-b.done
		lc.SetReadDeadline(time.Time{})
		bc.SetWriteDeadline(time.Time{})
	}
	return b.err == nil
}

// sent reports whether the whole body has been read from the client, so
// that its connection can carry another request (finish then reports
// whether the backend took it all). A body that did not stream was read
// whole.
func (b *bodyStream) sent() bool { return b == nil || b.left.Load() == 0 }

// clientFailed reports whether the client hung up before its body was
// whole.
func (b *bodyStream) clientFailed() bool {
	if b == nil {
		return false
	}
	_, ok := errors.AsType[clientError](b.err)
	return ok
}

// How a response body is delimited (RFC 9112, section 6.3).
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// ended is how an answer to method with this head, relayed whole, ends.
func (rh *responseHead) ended(method string) answerEnd {
	switch {
	case rh.body == bodyLength || rh.body == bodyChunked:
		return endFramed
	case method != http.MethodHead && (rh.code == http.StatusNoContent || rh.code == http.StatusNotModified):
		return endBodiless
	}
	return endUnsure
}

// responseHead is a backend's response head, parsed; its lines stay in the
// scratch buffer it was read into.
type responseHead struct {
	code    int
	body    int
	length  int64
	close   bool     // the backend closes the connection after this answer
	date    bool     // it sent a Date
	dropped [][]byte // header names its Connection header lists
}

// readResponseHead reads a response head from r into *scratch and parses it.
func readResponseHead(r *bufio.Reader, scratch *[]byte, method string, rh *responseHead) error {
	buf := (*scratch)[:0]
	for start := 0; ; {
		line, err := r.ReadSlice('\n')
		buf = append(buf, line...)
		*scratch = buf
		if len(buf) > maxResponseHead {
			return fmt.Errorf("response head longer than %d bytes", maxResponseHead)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue // the rest of a long line
		case err != nil:
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if start > 0 && len(bytes.TrimRight(buf[start:], "\r\n")) == 0 {
			return rh.parse(buf, method)
		}
		start = len(buf)
	}
}

func (rh *responseHead) parse(buf []byte, method string) error {
	*rh = responseHead{length: -1}
	line, _ := nextLine(buf)
	proto, status, _ := bytes.Cut(line, []byte(" "))
	http10 := string(proto) == "HTTP/1.0"
	if !http10 && string(proto) != "HTTP/1.1" {
		return fmt.Errorf("malformed response line %q", line)
	}
	code, err := strconv.Atoi(string(bytes.TrimRight(status[:min(3, len(status))], " ")))
	if err != nil || len(status) < 3 || code < 100 || code > 999 || len(status) > 3 && status[3] != ' ' {
		return fmt.Errorf("malformed response line %q", line)
	}
	rh.code = code
	if code == http.StatusSwitchingProtocols {
		return errors.New("backend switched protocols on a request that asked for no upgrade")
	}
	rh.close = http10
	chunked := false
	var length []byte
	for line := range headerLines(buf) {
		name, value, ok := splitHeader(line)
		if !ok {
			return fmt.Errorf("malformed response header %q", line)
		}
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			// Repeated, it must repeat to the letter, as for net/http.
			n, ok := parseLength(value)
			if !ok || length != nil && !bytes.Equal(length, value) {
				return fmt.Errorf("bad Content-Length %q", value)
			}
			rh.length, length = n, value
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			if http10 {
				break // HTTP/1.0 has no transfer codings; net/http ignores it too
			}
			if !bytes.EqualFold(value, []byte("chunked")) || chunked {
				return fmt.Errorf("unsupported Transfer-Encoding %q", value)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case bytes.EqualFold(tok, []byte("close")):
					rh.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					rh.close = rh.close && !http10
				case len(tok) > 0:
					rh.dropped = append(rh.dropped, tok)
				}
			}
		case bytes.EqualFold(name, []byte("date")):
			rh.date = true
		}
	}
	for _, d := range rh.dropped {
		if bytes.EqualFold(d, []byte("date")) {
			rh.date = false // a hop-by-hop Date: the client gets the router's
		}
	}
	switch {
	case method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified:
		rh.body = bodyNone
	case chunked:
		rh.body, rh.length = bodyChunked, -1
	case rh.length >= 0:
		rh.body = bodyLength
	default:
		rh.body = bodyUntilClose
	}
	return nil
}

// dropResponseHeader reports whether a backend's header stays behind: the
// hop-by-hop ones, those its Connection header names, one named as the
// Proxy's Header, and the framing headers, which the lane writes itself.
func (rh *responseHead) dropResponseHeader(name []byte, header string) bool {
	for _, h := range [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Content-Length", "Upgrade", "Te"} {
		if bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	if header != "" && bytes.EqualFold(name, []byte(header)) {
		return true
	}
	for _, d := range rh.dropped {
		if bytes.EqualFold(name, d) {
			return true
		}
	}
	return false
}

// writeTo writes the head the client gets: the backend's, without its
// hop-by-hop headers, with header naming backend (unless either is empty),
// and Connection: close unless keep.
func (rh *responseHead) writeTo(w *bufio.Writer, head []byte, header, backend string, keep bool) {
	writeStatusLine(w, rh.code)
	for line := range headerLines(head) {
		name, _, _ := bytes.Cut(line, []byte(":"))
		if !rh.dropResponseHeader(name, header) {
			w.Write(line)
			w.WriteString("\r\n")
		}
	}
	if header != "" && backend != "" {
		w.WriteString(header)
		w.WriteString(": ")
		w.WriteString(backend)
		w.WriteString("\r\n")
	}
	if rh.code < 200 {
		w.WriteString("\r\n")
		return
	}
	switch {
	case rh.body == bodyChunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case rh.length >= 0 && rh.code != http.StatusNoContent:
		// The body's length, or for HEAD and 304 the length it would have.
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(rh.length, 10))
		w.WriteString("\r\n")
	}
	if !rh.date {
		writeDate(w)
	}
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// writeStatusLine writes the status line net/http's server would: the
// backend's reason phrase stays behind, as it does with ReverseProxy.
func writeStatusLine(w *bufio.Writer, code int) {
	w.WriteString("HTTP/1.1 ")
	writeCode(w, code)
	w.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		w.WriteString(text)
	} else {
		w.WriteString("status code ")
		writeCode(w, code)
	}
	w.WriteString("\r\n")
}

// writeCode writes a three-digit status code without allocating.
func writeCode(w *bufio.Writer, code int) {
	w.WriteByte(byte('0' + code/100%10))
	w.WriteByte(byte('0' + code/10%10))
	w.WriteByte(byte('0' + code%10))
}

// cleanQuery reports whether url.ParseQuery takes q whole: no semicolons,
// no bad escapes. ReverseProxy forwards only the parts it can parse.
func cleanQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parseLength parses a Content-Length value: digits only, as net/http
// reads it.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func writeDate(w *bufio.Writer) {
	var b [64]byte
	w.WriteString("Date: ")
	w.Write(time.Now().UTC().AppendFormat(b[:0], http.TimeFormat))
	w.WriteString("\r\n")
}

// answerError has ErrorHandler answer lr for err, backend's failure if
// backend is not empty. It returns the status code sent and whether the
// connection may carry another request.
func (lc *laneConn) answerError(lr *laneRequest, backend string, err error, keep bool) (int, bool) {
	p := lc.p
	a := &errorAnswer{h: http.Header{}}
	if backend != "" && p.header != "" {
		a.h[p.header] = []string{backend}
	}
	p.errorHandler()(a, lr.req, err)
	return a.writeTo(lc.bw, lr.method, keep)
}

// errorAnswer is the http.ResponseWriter the lane gives ErrorHandler: it
// collects the answer, which the lane then sends as net/http's server would
// send it for a handler that has returned.
type errorAnswer struct {
	h    http.Header
	code int
	body []byte
}

func (a *errorAnswer) Header() http.Header { return a.h }

func (a *errorAnswer) WriteHeader(code int) {
	if a.code == 0 && code >= 200 {
		a.code = code
	}
}

func (a *errorAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	a.body = append(a.body, b...)
	return len(b), nil
}

func (a *errorAnswer) writeTo(w *bufio.Writer, method string, keep bool) (int, bool) {
	a.WriteHeader(http.StatusOK)
	h := a.h
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		keep = false
	}
	for _, k := range [...]string{"Connection", "Content-Length", "Transfer-Encoding"} {
		delete(h, k) // the lane frames the answer itself
	}
	// As net/http's server: the handler's headers sorted, then the ones it
	// adds.
	body := a.body
	allowed := a.code != http.StatusNoContent && a.code != http.StatusNotModified
	if !allowed {
		body = nil
	}
	writeStatusLine(w, a.code)
	h.Write(w)
	if _, ok := h["Date"]; !ok {
		writeDate(w)
	}
	if allowed && (method != http.MethodHead || len(body) > 0) {
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n")
	}
	if _, ok := h["Content-Type"]; !ok && len(body) > 0 && h.Get("Content-Encoding") == "" {
		w.WriteString("Content-Type: ")
		w.WriteString(http.DetectContentType(body))
		w.WriteString("\r\n")
	}
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if method != http.MethodHead {
		w.Write(body)
	}
	return a.code, w.Flush() == nil && keep
}

// clientError marks a failure to write to the client, as opposed to one of
// the backend.
type clientError struct{ error }

func (e clientError) Unwrap() error { return e.error }

// more makes src hold at least one unread byte. Before it waits for the
// backend it flushes what the client is owed, so an answer that trickles in
// (server-sent events, a slow stream) reaches the client as it comes, and a
// quick one goes out in one write.
func more(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if dst.Buffered() > 0 {
		if err := dst.Flush(); err != nil {
			return clientError{err}
		}
	}
	_, err := src.Peek(1)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// copyN relays n bytes of a body. With the sink under dst, the rest of a
// large body goes from socket to socket once the reader is empty, and a
// piece too large for the room left in dst goes out with what dst holds
// (the head) in one system call, where dst would fill its buffer, write
// it, and write the rest: two writes and two trips through TCP for an
// answer of 16 to 64 KB.
func copyN(dst *bufio.Writer, sink *answerSink, src *bufio.Reader, n int64) error {
	for n > 0 {
		if sink != nil && sink.from != nil && n >= spliceAnswer && src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return clientError{err}
			}
			if ok, rerr, werr := spliceBody(sink.w, sink.from, n, func(int64) {}); ok {
				switch {
				case werr != nil:
					return clientError{werr}
				case errors.Is(rerr, io.EOF):
					return io.ErrUnexpectedEOF
				}
				return rerr
			}
		}
		if err := more(dst, src); err != nil {
			return err
		}
		b, _ := src.Peek(int(min(n, int64(src.Buffered()))))
		var err error
		if sink != nil && dst.Buffered() > 0 && len(b) > dst.Available() {
			err = sink.flushWith(dst, b)
		} else {
			_, err = dst.Write(b)
		}
		if err != nil {
			return clientError{err}
		}
		src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// answerSink is what a client's answer writer writes to: the connection,
// and, in flushWith, a piece of the body after the writer's bytes.
type answerSink struct {
	w    io.ReadWriter
	next []byte // to go after the bytes being flushed
	took bool   // next went too
	// from is the backend connection under the reader copyN reads, while
	// an answer is relayed: copyN moves the rest of a large body from it
	// to w directly (spliceBody).
	from io.ReadWriter
}

// spliceAnswer is the least of a body left to relay, past what the reader
// holds, that goes from socket to socket: below it the pipe's two calls
// cost more than the copies they save.
const spliceAnswer = answerSize

func (s *answerSink) Write(p []byte) (int, error) {
	if s.next == nil {
		return s.w.Write(p)
	}
	n, err := writeBoth(s.w, p, s.next)
	s.took = n == len(p)+len(s.next)
	return min(n, len(p)), err
}

// flushWith flushes w and writes b after what it held, with one writev
// where the connection has it. took guards a w that held nothing, whose
// Flush writes nothing.
func (s *answerSink) flushWith(w *bufio.Writer, b []byte) error {
	s.next, s.took = b, false
	err := w.Flush()
	took := s.took
	s.next, s.took = nil, false
	if err == nil && !took {
		_, err = w.Write(b)
	}
	return err
}

// copyUntilClose relays a body that ends when the backend closes.
func copyUntilClose(dst *bufio.Writer, sink *answerSink, src *bufio.Reader) error {
	for {
		if err := more(dst, src); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		if err := copyN(dst, sink, src, int64(src.Buffered())); err != nil {
			return err
		}
	}
}

// copyChunked relays a chunked body chunk by chunk, with its trailers;
// chunk extensions stay behind, as with ReverseProxy.
func copyChunked(dst *bufio.Writer, sink *answerSink, src *bufio.Reader) error {
	for {
		line, err := readLine(dst, src)
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseUint(string(bytes.Trim(size, " \t")), 16, 62)
		if err != nil {
			return fmt.Errorf("malformed chunk size line %q", line)
		}
		var hex [16]byte
		dst.Write(strconv.AppendUint(hex[:0], n, 16))
		dst.WriteString("\r\n")
		if n == 0 {
			break
		}
		if err := copyN(dst, sink, src, int64(n)); err != nil {
			return err
		}
		if line, err := readLine(dst, src); err != nil {
			return err
		} else if len(line) > 0 {
			return errors.New("chunk longer than its size")
		}
		dst.WriteString("\r\n")
	}
	for {
		line, err := readLine(dst, src)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if _, _, ok := splitHeader(line); !ok {
			return fmt.Errorf("malformed trailer %q", line)
		}
		dst.Write(line)
		dst.WriteString("\r\n")
	}
	_, err := dst.WriteString("\r\n")
	return err
}

// readLine reads one line of a chunked body's framing, without its line end.
func readLine(dst *bufio.Writer, src *bufio.Reader) ([]byte, error) {
	if err := more(dst, src); err != nil {
		return nil, err
	}
	line, err := src.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("chunk framing line too long")
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line, _ = nextLine(line)
	return line, nil
}
