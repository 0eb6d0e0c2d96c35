package patterns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/patterns/forward"
	"github.com/kiln-dev/kiln/spec"
)

// Limits on what a root holds in memory: it must replay the request body to
// every leaf and hold every answer to gather them.
const (
	MaxScatterBody = 32 << 20
	MaxLeafAnswer  = 64 << 20
)

// NewRoot returns the root of a scatter/gather service: it sends each
// request to every leaf concurrently, each with the service's timeout, and
// gathers the answers.
func NewRoot(svc *spec.Service, leaves []*url.URL, opts Options) (http.Handler, error) {
	sg := svc.Scatter
	if sg == nil {
		return nil, fmt.Errorf("service %q is not a scatter/gather service", svc.Name)
	}
	if len(leaves) == 0 {
		return nil, fmt.Errorf("service %q: root needs at least one leaf", svc.Name)
	}
	gather := BuiltinGather(sg.Gather)
	if gather == nil {
		gather = opts.Gather
	}
	if gather == nil {
		return nil, fmt.Errorf("service %q: gather %q is neither built in (concat, merge, first) nor registered: pass it to the SDK with sdk.Gather", svc.Name, sg.Gather)
	}
	rt := &root{
		leaves:  leaves,
		gather:  gather,
		first:   isFirst(sg.Gather),
		timeout: sg.Timeout.D(),
		partial: sg.OnLeafError == spec.OnLeafErrorPartial,
		client:  &http.Client{Transport: opts.transport(), CheckRedirect: noRedirect},
		metrics: newMetrics(svc.Name),
		log:     opts.logger(),
		workers: workers{tasks: make(chan func())},
	}
	if rt.timeout <= 0 {
		rt.timeout = spec.DefaultTimeout.D()
	}
	for i := range leaves {
		rt.names = append(rt.names, fmt.Sprintf("leaf-%d", i))
	}
	warm := func(ctx context.Context) { forward.Warm(ctx, rt.client.Transport, plainHosts(leaves)...) }
	return &frontend{next: rt, metrics: rt.metrics.handler(), warm: warm}, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

type root struct {
	leaves  []*url.URL
	names   []string
	gather  GatherFunc
	first   bool
	timeout time.Duration
	partial bool
	client  *http.Client
	metrics *metrics
	log     *slog.Logger
	workers workers
}

// workers run the requests to leaves on goroutines that outlive them: a
// new goroutine for each grew its stack for the HTTP client every time,
// a tenth of a root's CPU.
type workers struct {
	tasks chan func()
	idle  atomic.Int32
}

// maxIdleWorkers bounds the goroutines kept waiting for work.
const maxIdleWorkers = 256

func (w *workers) run(f func()) {
	select {
	case w.tasks <- f: // a waiting worker takes it
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	for {
		f()
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		f = <-w.tasks
		w.idle.Add(-1)
	}
}

// leafResult is one leaf's answer or failure.
type leafResult struct {
	index   int
	resp    Response
	err     error
	timeout bool
}

func (rt *root) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxScatterBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("kiln: reading request body: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	// One deadline for every leaf: they all start now.
	ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
	defer cancel()
	results := make(chan leafResult, len(rt.leaves))
	header := leafHeader(r)
	for i := range rt.leaves {
		rt.workers.run(func() { results <- rt.ask(ctx, i, r, header, body) })
	}

	var parts []LeafResponse
	var failed []leafResult
	for range rt.leaves {
		res := <-results
		if res.err != nil {
			failed = append(failed, res)
			continue
		}
		parts = append(parts, LeafResponse{Leaf: rt.names[res.index], Index: res.index, Response: res.resp})
		if rt.first {
			break // the others are cancelled by the deferred cancel
		}
	}
	sortParts(parts)

	if rt.first && len(parts) > 0 {
		failed = nil // a first-success answer lacks nothing
	}
	if len(failed) > 0 && (!rt.partial || len(parts) == 0) {
		rt.fail(w, failed)
		return
	}
	var answer Response
	for {
		answer, err = rt.gather(parts)
		var le *LeafError
		if err == nil || !errors.As(err, &le) || !rt.partial {
			break
		}
		// Leave out the leaf whose answer the gather could not use.
		i := indexOfLeaf(parts, le.Leaf)
		if i < 0 {
			break
		}
		failed = append(failed, leafResult{index: parts[i].Index, err: le.Err})
		parts = append(parts[:i], parts[i+1:]...)
		if len(parts) == 0 {
			rt.fail(w, failed)
			return
		}
	}
	if err != nil {
		rt.log.Warn("gather failed", "err", err)
		http.Error(w, "kiln: gather failed: "+err.Error(), http.StatusBadGateway)
		return
	}

	h := w.Header()
	for k, v := range answer.Header {
		h[k] = v
	}
	if h.Get("Content-Type") == "" && len(parts) > 0 {
		if ct := parts[0].Header.Get("Content-Type"); ct != "" {
			h.Set("Content-Type", ct)
		}
	}
	h.Set(HeaderBackend, joinNames(len(parts), func(i int) string { return parts[i].Leaf }))
	if len(failed) > 0 {
		h.Set(HeaderMissing, rt.missing(failed))
	}
	status := answer.Status
	if status == 0 {
		status = http.StatusOK
	}
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(answer.Body)
}

func indexOfLeaf(parts []LeafResponse, leaf string) int {
	for i := range parts {
		if parts[i].Leaf == leaf {
			return i
		}
	}
	return -1
}

// fail answers 502, or 504 when every failure was a timeout, naming each
// failed leaf and its cause.
func (rt *root) fail(w http.ResponseWriter, failed []leafResult) {
	sortResults(failed)
	status := http.StatusGatewayTimeout
	var msg strings.Builder
	for _, f := range failed {
		if !f.timeout {
			status = http.StatusBadGateway
		}
		fmt.Fprintf(&msg, "kiln: %s failed: %v\n", rt.names[f.index], f.err)
	}
	w.Header().Set(HeaderMissing, rt.missing(failed))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg.String())
}

func (rt *root) missing(failed []leafResult) string {
	sortResults(failed)
	return joinNames(len(failed), func(i int) string { return rt.names[failed[i].index] })
}

func sortResults(rs []leafResult) {
	slices.SortFunc(rs, func(a, b leafResult) int { return a.index - b.index })
}

func joinNames(n int, name func(int) string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name(i))
	}
	return b.String()
}

// hopHeaders are connection-specific and must not be forwarded (RFC 9110
// section 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// leafHeader is the header of r's requests to the leaves: r's, less its
// hop-by-hop fields, with the client added to X-Forwarded-For in one line,
// as routers and httputil.ReverseProxy add it. Every leaf's request shares
// it, read only.
func leafHeader(r *http.Request) http.Header {
	h := r.Header.Clone()
	for _, name := range hopHeaders {
		h.Del(name)
	}
	if client, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			client = strings.Join(prior, ", ") + ", " + client
		}
		h.Set("X-Forwarded-For", client)
	}
	return h
}

// ask sends the request to leaf i and reads its whole answer.
func (rt *root) ask(ctx context.Context, i int, r *http.Request, header http.Header, body []byte) leafResult {
	start := time.Now()
	res := rt.do(ctx, i, r, header, body)
	// A leaf that could not be reached failed, even if the deadline ended
	// while it was dialled again.
	if res.err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !forward.Unreachable(res.err) {
		res.timeout = true
		res.err = fmt.Errorf("no answer within %s", rt.timeout)
	}
	code := res.resp.Status
	if res.err != nil && code == 0 {
		code = http.StatusBadGateway
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		rt.metrics.observe(rt.names[i], code, start, res.err != nil)
	}
	return res
}

func (rt *root) do(ctx context.Context, i int, r *http.Request, header http.Header, body []byte) leafResult {
	u := *rt.leaves[i]
	u.Path = strings.TrimSuffix(u.Path, "/") + r.URL.Path
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	// As http.NewRequestWithContext would make it, without printing the
	// URL to parse it again.
	req := (&http.Request{
		Method: r.Method, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: u.Host, Body: http.NoBody,
	}).WithContext(ctx)
	if len(body) > 0 {
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := rt.client.Do(req)
	if err != nil {
		return leafResult{index: i, err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxLeafAnswer+1))
	if err == nil && len(b) > MaxLeafAnswer {
		err = fmt.Errorf("answer is larger than %d bytes", MaxLeafAnswer)
	}
	out := leafResult{index: i, resp: Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err: err}
	if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		out.err = fmt.Errorf("answered %s", resp.Status)
	}
	return out
}

// unwrapURLError drops url.Error's "Get "http://...":" prefix: the leaf's
// name already says where.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
