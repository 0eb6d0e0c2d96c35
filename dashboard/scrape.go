package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kiln-dev/kiln/patterns"
)

// scrapeEvery is the least time between two reads of one process.
const scrapeEvery = time.Second

// scraper reads the processes' metrics when asked, at most once per
// process per scrapeEvery, and keeps the last two reads of each to make
// rates of.
type scraper struct {
	client *http.Client
	mu     sync.Mutex // one refresh at a time, so two pages share reads
	last   map[string]*sample
}

// sample is what the last two reads of one process gave.
type sample struct {
	pid        int
	at, prevAt time.Time
	// A router's or root's counters by backend, or a replica's or leaf's
	// calls by service, and the same from the read before.
	cur, prev map[string]counts
}

// counts are cumulative: requests, errors and the latency histogram's
// buckets (upper bound, count), +Inf last.
type counts struct {
	requests, errors float64
	buckets          []bucket
}

type bucket struct{ le, n float64 }

type backendJSON struct {
	Requests  float64  `json:"requests"`
	Errors    float64  `json:"errors"`
	RPS       *float64 `json:"rps"` // nil until two reads make a rate
	ErrorRate *float64 `json:"error_rate"`
	P50       *float64 `json:"p50_ms"` // nil without requests in the interval
	P99       *float64 `json:"p99_ms"`
}

type callJSON struct {
	From  string   `json:"from"`
	To    string   `json:"to"`
	Total float64  `json:"total"`
	RPS   *float64 `json:"rps"`
}

// refresh reads the processes due for a read, and returns each backend's
// numbers by process name and the calls between services.
func (sc *scraper) refresh(ctx context.Context, procs []processJSON) (map[string]*backendJSON, []callJSON) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	now := time.Now()
	var wg sync.WaitGroup
	for _, p := range procs {
		s := sc.last[p.Name]
		if p.PID == 0 || p.Addr == "" || (s != nil && now.Sub(s.at) < scrapeEvery) {
			continue
		}
		if s == nil || s.pid != p.PID {
			s = &sample{pid: p.PID} // a new process counts from zero
			sc.last[p.Name] = s
		}
		s.prevAt, s.prev, s.at = s.at, s.cur, now
		wg.Go(func() {
			c, err := sc.read(ctx, p) // each goroutine writes its own sample
			if err != nil {
				s.cur, s.prev = nil, nil
				return
			}
			s.cur = c
		})
	}
	wg.Wait()

	backends := map[string]*backendJSON{}
	calls := map[[2]string]*callJSON{}
	for _, p := range procs {
		s := sc.last[p.Name]
		if s == nil || s.cur == nil {
			continue
		}
		secs := s.at.Sub(s.prevAt).Seconds()
		switch patterns.Role(p.Role) {
		case patterns.RoleRouter, patterns.RoleRoot:
			for name, c := range s.cur {
				b := &backendJSON{Requests: c.requests, Errors: c.errors}
				if s.prev != nil {
					d := c.since(s.prev[name])
					b.RPS = ptr(d.requests / secs)
					b.ErrorRate = ptr(0)
					if d.requests > 0 {
						b.ErrorRate = ptr(d.errors / d.requests)
						b.P50, b.P99 = quantileMS(0.5, d.buckets), quantileMS(0.99, d.buckets)
					}
				}
				backends[p.Service+"/"+name] = b
			}
		default:
			for to, c := range s.cur {
				k := [2]string{p.Service, to}
				call := calls[k]
				if call == nil {
					call = &callJSON{From: p.Service, To: to}
					calls[k] = call
				}
				call.Total += c.requests
				if s.prev != nil {
					call.RPS = ptr(deref(call.RPS) + c.since(s.prev[to]).requests/secs)
				}
			}
		}
	}
	out := []callJSON{}
	for _, c := range calls {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b callJSON) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	return backends, out
}

// read asks one process for its numbers: a router's or root's metrics,
// or a replica's or leaf's calls.
func (sc *scraper) read(ctx context.Context, p processJSON) (map[string]counts, error) {
	path := patterns.PathCalls
	if r := patterns.Role(p.Role); r == patterns.RoleRouter || r == patterns.RoleRoot {
		path = "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := sc.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %s", p.Addr, path, resp.Status)
	}
	if path == patterns.PathCalls {
		var calls map[string]float64
		if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
			return nil, fmt.Errorf("%s%s: %w", p.Addr, path, err)
		}
		out := map[string]counts{}
		for to, n := range calls {
			out[to] = counts{requests: n}
		}
		return out, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", p.Addr, err)
	}
	return backendCounts(families), nil
}

// backendCounts reads kiln's backend series out of a router's metrics.
func backendCounts(families map[string]*dto.MetricFamily) map[string]counts {
	out := map[string]counts{}
	each := func(family string, f func(c *counts, m *dto.Metric)) {
		fam := families[family]
		if fam == nil {
			return
		}
		for _, m := range fam.Metric {
			name := label(m, "backend")
			c := out[name]
			f(&c, m)
			out[name] = c
		}
	}
	each("kiln_backend_requests_total", func(c *counts, m *dto.Metric) { c.requests += m.GetCounter().GetValue() })
	each("kiln_backend_errors_total", func(c *counts, m *dto.Metric) { c.errors += m.GetCounter().GetValue() })
	each("kiln_backend_request_duration_seconds", func(c *counts, m *dto.Metric) {
		h := m.GetHistogram()
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				c.buckets = append(c.buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
			}
		}
		sort.Slice(c.buckets, func(i, j int) bool { return c.buckets[i].le < c.buckets[j].le })
		c.buckets = append(c.buckets, bucket{math.Inf(1), float64(h.GetSampleCount())})
	})
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// since is what c counted after old. A counter that went down was reset
// (its process restarted), so all of c is new.
func (c counts) since(old counts) counts {
	if c.requests < old.requests || len(old.buckets) != len(c.buckets) && len(old.buckets) > 0 {
		return c
	}
	d := counts{requests: c.requests - old.requests, errors: max(0, c.errors-old.errors)}
	for i, b := range c.buckets {
		n := b.n
		if i < len(old.buckets) {
			n -= old.buckets[i].n
		}
		d.buckets = append(d.buckets, bucket{b.le, n})
	}
	return d
}

// quantileMS estimates quantile q of a cumulative histogram in
// milliseconds, interpolating within the bucket it falls in as
// Prometheus's histogram_quantile does; nil when the histogram is empty.
func quantileMS(q float64, bs []bucket) *float64 {
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return nil
	}
	rank := q * bs[len(bs)-1].n
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return ptr(lo * 1000) // beyond the last bound: say the bound
			}
			if b.n == below {
				return ptr(b.le * 1000)
			}
			return ptr((lo + (b.le-lo)*(rank-below)/(b.n-below)) * 1000)
		}
		lo, below = b.le, b.n
	}
	return ptr(lo * 1000)
}

func ptr(f float64) *float64 { return &f }

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}
