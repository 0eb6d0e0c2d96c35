package dashboard_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-dev/kiln/internal/browser"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
)

// shopBin is examples/shop and bigBin testdata/bigapp, built once by
// TestMain.
var shopBin, bigBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-dashboard-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shopBin, err = testbin.Build(dir, "./examples/shop")
	if err == nil {
		bigBin, err = testbin.Build(dir, "./dashboard/testdata/bigapp")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// driver runs a program as go run . does and returns the URLs its lines
// announce: each service's and, under "dashboard", the dashboard's.
func driver(t *testing.T, bin string, env ...string) map[string]string {
	t.Helper()
	return driverArgs(t, bin, nil, env...)
}

// driverArgs is driver with command-line arguments.
func driverArgs(t *testing.T, bin string, args []string, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
			t.Errorf("driver after Ctrl-C: %v", err)
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The dashboard's line follows the serving lines at once, if at all:
	// quiet after them means there is none.
	urls := map[string]string{}
	line := regexp.MustCompile(`^kiln: (?:(\S+) serving|(dashboard)) at (http://127\.0\.0\.1:\d+)$`)
	wait := 60 * time.Second
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("driver's output ended before the dashboard line\n%s", stderr.Bytes())
			}
			m := line.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("driver printed %q, want serving lines, then the dashboard's\n%s", l, stderr.Bytes())
			}
			urls[m[1]+m[2]] = m[3]
			if m[2] != "" {
				return urls
			}
			wait = 3 * time.Second
		case <-time.After(wait):
			if len(urls) == 0 {
				t.Fatalf("no serving line within %s\n%s", wait, stderr.Bytes())
			}
			return urls
		}
	}
}

func TestTheDriverServesItsDashboardOnThePortItIsGivenOrNotAtAll(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	urls := driver(t, shopBin, "KILN_DASHBOARD_PORT="+strconv.Itoa(port))
	if want := "http://127.0.0.1:" + strconv.Itoa(port); urls["dashboard"] != want {
		t.Fatalf("with KILN_DASHBOARD_PORT=%d the dashboard is at %s, want %s", port, urls["dashboard"], want)
	}
	if resp := get(t, urls["dashboard"]+"/api/topology"); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/topology = %s %s, want 200 JSON", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, args := range [][]string{{"--no-dashboard"}, {"--dashboard-port", strconv.Itoa(port), "--no-dashboard"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			start := time.Now()
			urls := driverArgs(t, shopBin, args)
			if u, ok := urls["dashboard"]; ok || len(urls) != 3 {
				t.Fatalf("with %s the driver announced %v (a dashboard at %q), want 3 services and no dashboard", args, urls, u)
			}
			t.Logf("no dashboard line in %s", time.Since(start).Round(time.Second))
		})
	}
}

// nodes is what the page shows of each process, for failures.
const nodes = `[...document.querySelectorAll('.node')].map(n => n.dataset.process + ' ' + n.dataset.state + ' ' + n.dataset.requests + ' ' + n.querySelector('.nums').textContent).join('\n') + '\nedges: ' + document.querySelectorAll('#edges > path').length`

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestChromiumShowsShopLiveOnItsDashboard drives the dashboard of a
// running examples/shop in headless Chromium, through every state the page
// must show, saving a screenshot of each.
func TestChromiumShowsShopLiveOnItsDashboard(t *testing.T) {
	ctx := browser.Start(t)
	urls := driver(t, shopBin)
	browser.Open(t, ctx, urls["dashboard"])

	t.Run("the diagram shows every service and backend", func(t *testing.T) {
		browser.WaitFor(t, ctx, 10*time.Second, "every process ready", `document.querySelectorAll('.node').length === 12 && [...document.querySelectorAll('.node')].every(n => n.dataset.state === 'ready')`, nodes)
		got := browser.Eval[[]string](t, ctx, `[...document.querySelectorAll('.service')].map(s =>
			s.dataset.service + ': ' + s.querySelector('.entry').textContent + ' ' + s.querySelector('.front').dataset.process + ' → ' +
			[...s.querySelectorAll('.backend')].map(b => b.dataset.process).join(' '))`)
		host := func(svc string) string { return strings.TrimPrefix(urls[svc], "http://") }
		want := []string{
			"web: " + host("web") + " web/router-0 → web/replica-0 web/replica-1",
			"carts: " + host("carts") + " carts/router-0 → carts/shard-0 carts/shard-1 carts/shard-2",
			"catalog: " + host("catalog") + " catalog/root-0 → catalog/leaf-0 catalog/leaf-1 catalog/leaf-2 catalog/leaf-3",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("diagram = %q, want %q", got, want)
		}
		loaded := browser.Eval[[]string](t, ctx, `[location.href, ...performance.getEntriesByType('resource').map(e => e.name)]`)
		for _, u := range loaded {
			if !strings.HasPrefix(u, urls["dashboard"]+"/") {
				t.Fatalf("the page loaded %s, want only what %s serves (it loaded %q)", u, urls["dashboard"], loaded)
			}
		}
		browser.Screenshot(t, ctx, "1-topology.png")
	})

	t.Run("traffic through the entry shows on the right backend within 5 s", func(t *testing.T) {
		resp := get(t, urls["web"]+"/cart/ann") // 404: nobody stored it yet, but carts answered
		shard := resp.Header.Get("Shop-Cart-Shard")
		if shard == "" {
			t.Fatalf("GET /cart/ann through web: %s with no Shop-Cart-Shard", resp.Status)
		}
		// Steady traffic through web, as a person trying the app makes.
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			sent := 0
			defer func() { done <- sent }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				for _, path := range []string{"/cart/ann", "/find?q=tea"} {
					if resp, err := http.Get(urls["web"] + path); err == nil {
						resp.Body.Close()
					}
				}
				sent++
			}
		}()
		start := time.Now()
		right := "carts/" + shard
		browser.WaitFor(t, ctx, 5*time.Second, "carts' numbers", fmt.Sprintf(`(() => {
			const n = p => document.querySelector('.node[data-process="' + p + '"]');
			const busy = n => !/^(–|0\.0)\//.test(n.querySelector('.rps').textContent);
			return busy(n(%q)) && [...document.querySelectorAll('#svc-carts .backend')].every(s => s.dataset.process === %q || s.dataset.requests === '0')
				&& [...document.querySelectorAll('#svc-catalog .backend, #svc-web .backend')].every(busy)
				&& document.querySelectorAll('#edges > path').length === 2;
		})()`, right, right), nodes)
		took := time.Since(start)
		browser.Screenshot(t, ctx, "2-traffic.png")
		close(stop)
		t.Logf("traffic through web for key ann showed on %s, and on no other shard, %s after it began (%d requests of each kind)", right, took.Round(time.Millisecond), <-done)
		edges := browser.Eval[[]string](t, ctx, `[...document.querySelectorAll('#edges > path')].map(p => p.dataset.from + '→' + p.dataset.to)`)
		if !slices.Equal(edges, []string{"web→carts", "web→catalog"}) {
			t.Fatalf("calls drawn = %q, want web→carts, web→catalog", edges)
		}
	})

	t.Run("the key lookup agrees with the Kiln-Backend header", func(t *testing.T) {
		for _, key := range []string{"ann", "bob", "carol", "dave", "erin", "/cart/frank"} {
			path := key
			if !strings.HasPrefix(key, "/") {
				path = "/cart/" + key
			}
			want := get(t, urls["carts"]+path).Header.Get(patterns.HeaderBackend)
			browser.Eval[bool](t, ctx, `(document.querySelector('#lookup-carts').value = '') === ''`)
			if err := chromedp.Do(ctx,
				chromedp.Focus("#lookup-carts"),
				chromedp.KeyEvent(key+"\r"), // typed, then Enter
			); err != nil {
				t.Fatal(err)
			}
			browser.WaitFor(t, ctx, 5*time.Second, "lookup of "+key, `document.querySelector('#svc-carts .lookup output').textContent.endsWith('→ `+want+`') && document.querySelector('#svc-carts .node.hit') !== null`, nodes)
			if hit := browser.Eval[string](t, ctx, `document.querySelector('#svc-carts .node.hit').dataset.process`); hit != "carts/"+want {
				t.Fatalf("lookup of %q highlights %s, want carts/%s", key, hit, want)
			}
		}
		browser.Screenshot(t, ctx, "3-lookup.png")
	})

	t.Run("a killed leaf shows restarting, then ready again", func(t *testing.T) {
		const leaf = "catalog/leaf-1"
		pid := browser.Eval[int](t, ctx, `fetch('api/stats').then(r => r.json()).then(s => s.processes.find(p => p.name === '`+leaf+`').pid)`)
		// Watch the node, and show the leaf's logs, as a person would.
		browser.Eval[bool](t, ctx, `(() => {
			const n = document.querySelector('.node[data-process="`+leaf+`"]');
			window.seen = [];
			new MutationObserver(() => window.seen.push(n.dataset.state + (n.classList.contains('restarted') ? '+restarted' : ''))).observe(n, {attributes: true});
			n.click();
			return true;
		})()`)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		browser.WaitFor(t, ctx, 5*time.Second, "the restart on the node", `window.seen.some(s => s.startsWith('restarting') || s.endsWith('+restarted'))`, nodes)
		browser.WaitFor(t, ctx, 10*time.Second, "the leaf ready again", `(() => {
			const n = document.querySelector('.node[data-process="`+leaf+`"]');
			const notes = [...document.querySelectorAll('#log-lines .note')].map(l => l.textContent);
			return n.dataset.state === 'ready' && n.querySelector('.state').textContent.includes('↻1')
				&& notes.length === 2 && notes[0].includes('signal: killed; restarting in') && notes[1].includes('ready again');
		})()`, nodes+" + '\\nlogs: ' + document.querySelector('#log-lines').textContent")
		shown := browser.Eval[[]string](t, ctx, `[...document.querySelectorAll('#log-lines .line')].map(l => l.dataset.process)`)
		if len(shown) == 0 || slices.ContainsFunc(shown, func(p string) bool { return p != leaf }) {
			t.Fatalf("logs after a click on %s show %q, want its lines only", leaf, shown)
		}
		t.Logf("the node went through %v", browser.Eval[[]string](t, ctx, `window.seen`))
		browser.Screenshot(t, ctx, "4-restarted.png")
	})

	t.Run("the keyboard reaches every control", func(t *testing.T) {
		browser.Open(t, ctx, urls["dashboard"])
		browser.WaitFor(t, ctx, 10*time.Second, "the diagram", `document.querySelectorAll('.node').length === 12`, nodes)
		var reached []string
		for range 40 {
			if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
				t.Fatal(err)
			}
			reached = append(reached, browser.Eval[string](t, ctx, `(e => e.dataset.process || e.id || e.getAttribute('href') || e.textContent)(document.activeElement)`))
		}
		for _, want := range []string{"web/router-0", "web/replica-1", "carts/shard-2", "catalog/leaf-3", "lookup-carts", "log-service", "log-text", "log-lines"} {
			if !slices.Contains(reached, want) {
				t.Fatalf("40 Tabs reached %q, not %s", reached, want)
			}
		}
	})
}

// TestTheLayoutStaysReadableWithTwelveServicesAndLongNames opens the
// dashboard of testdata/bigapp: 12 services, one of 32 shards under a
// 56-character name, all called by a front door. No two services overlap,
// and nothing spills out of its service or clips its text.
func TestTheLayoutStaysReadableWithTwelveServicesAndLongNames(t *testing.T) {
	ctx := browser.Start(t)
	urls := driver(t, bigBin)
	for i := range 5 {
		get(t, urls["front-door"]+"/key-"+strconv.Itoa(i))
	}
	browser.Open(t, ctx, urls["dashboard"])
	browser.WaitFor(t, ctx, 15*time.Second, "12 services, 55 processes ready, 11 calls drawn", `document.querySelectorAll('.service').length === 12
		&& document.querySelectorAll('.node[data-state="ready"]').length === 55
		&& document.querySelectorAll('#edges > path').length === 11
		&& document.querySelectorAll('#svc-`+longName+` .backend').length === 32`, nodes)
	problems := browser.Eval[[]string](t, ctx, `(() => {
		const out = [];
		const cards = [...document.querySelectorAll('.service')];
		const r = e => e.getBoundingClientRect();
		cards.forEach((a, i) => cards.slice(i + 1).forEach(b => {
			const p = r(a), q = r(b);
			if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) out.push(a.dataset.service + ' overlaps ' + b.dataset.service);
		}));
		for (const c of cards) {
			const box = r(c);
			for (const e of c.querySelectorAll('h2, .entry, .node, .name, .state, .nums, .detail, .lookup input, .lookup button')) {
				const b = r(e);
				if (b.width === 0) continue; // hidden until focused
				if (b.left < box.left - 1 || b.right > box.right + 1) out.push(c.dataset.service + ': ' + (e.className || e.tagName) + ' spills out');
				if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflow !== 'visible') out.push(c.dataset.service + ': ' + (e.className || e.tagName) + ' clipped');
			}
		}
		return out;
	})()`)
	if len(problems) > 0 {
		browser.Screenshot(t, ctx, "bigapp-broken.png")
		t.Fatalf("layout problems: %q", problems)
	}
	if got := browser.Eval[float64](t, ctx, `document.querySelector('#svc-`+longName+` h2').getBoundingClientRect().height / parseFloat(getComputedStyle(document.querySelector('#svc-`+longName+` h2')).lineHeight)`); got > 3 {
		t.Errorf("the long name takes %.1f lines, want it to wrap in at most 3", got)
	}
	browser.Screenshot(t, ctx, "bigapp.png")
}

const longName = "an-extraordinarily-long-service-name-that-goes-on-and-on"
