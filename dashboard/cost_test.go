package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/dashboard"
	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
)

// counting counts the requests the dashboard sends, by host and path. It
// wraps the real transport: the requests still reach the processes.
type counting struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.URL.Host+r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counting) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *counting) total() int {
	n := 0
	for _, v := range c.snapshot() {
		n += v
	}
	return n
}

// startShop runs examples/shop's topology on the local target.
func startShop(t *testing.T) *local.Deployment {
	t.Helper()
	topo, err := testbin.Topology(shopBin)
	if err != nil {
		t.Fatal(err)
	}
	d, err := local.Start(context.Background(), topo, local.Options{Binary: shopBin, Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// cpuTicks is the CPU time pid has used, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}

// TestTheDashboardReadsNothingUnlessAskedAndEachProcessAtMostOnceASecond
// counts the requests the dashboard sends to the processes: none while
// nobody asks for its stats, and at most one per process per second while
// a client asks ten times a second, ten times as often as the page does.
func TestTheDashboardReadsNothingUnlessAskedAndEachProcessAtMostOnceASecond(t *testing.T) {
	d := startShop(t)
	c := &counting{n: map[string]int{}}
	srv := httptest.NewServer(&dashboard.Server{Source: d, Client: &http.Client{Transport: c, Timeout: time.Second}})
	defer srv.Close()

	// Nobody looking: the page's assets and topology are served, then
	// nothing is asked for 3 s.
	for _, path := range []string{"/", "/app.js", "/api/topology", "/api/logs"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	var routers []int
	for _, p := range d.Processes() {
		if strings.Contains(p.Name, "/router-") || strings.Contains(p.Name, "/root-") {
			routers = append(routers, p.PID)
		}
	}
	before := 0
	for _, pid := range routers {
		before += cpuTicks(t, pid)
	}
	time.Sleep(3 * time.Second)
	after := 0
	for _, pid := range routers {
		after += cpuTicks(t, pid)
	}
	if n := c.total(); n != 0 {
		t.Fatalf("with nobody asking for stats, the dashboard sent %d requests (%v), want 0", n, c.snapshot())
	}
	t.Logf("nobody looking for 3 s: 0 requests to the processes; the 3 routers used %d clock ticks in all", after-before)

	// Someone asks ten times a second for 3 s.
	start := time.Now()
	asked := 0
	for time.Since(start) < 3*time.Second {
		resp, err := http.Get(srv.URL + "/api/stats")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		asked++
		time.Sleep(100 * time.Millisecond)
	}
	window := time.Since(start)
	got := c.snapshot()
	limit := int(window/time.Second) + 1
	if len(got) != len(d.Processes()) {
		t.Fatalf("the dashboard read %d places (%v), want each of the %d processes", len(got), got, len(d.Processes()))
	}
	for _, p := range d.Processes() {
		path := patterns.PathCalls
		if strings.Contains(p.Name, "/router-") || strings.Contains(p.Name, "/root-") {
			path = "/metrics"
		}
		if n := got[p.Addr+path]; n < 2 || n > limit {
			t.Errorf("%s: %d reads of %s in %s, want 2 to %d (at most one a second)", p.Name, n, path, window.Round(time.Millisecond), limit)
		}
	}
	t.Logf("%d /api/stats in %s: %v reads by process (limit %d)", asked, window.Round(time.Millisecond), got, limit)

	// Nobody asks any more: the reads stop.
	total := c.total()
	time.Sleep(2 * time.Second)
	if n := c.total(); n != total {
		t.Fatalf("after the last /api/stats, the dashboard sent %d more requests, want 0", n-total)
	}
}
