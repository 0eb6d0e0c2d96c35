package testbin

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Loaded is what Load saw: answers, failures (no answer, or a 5xx one:
// a 404 is the program's answer, a 502 the topology's failure), the
// first failure, and when failures began and ended, counted from the
// start of the load, so a test can tell which step they came from.
type Loaded struct {
	OK, Failed  int64
	First       string
	From, Until time.Duration
	// Codes counts the answers by status code.
	Codes map[int]int64
}

// tally counts answers for Load and Paced.
type tally struct {
	start       time.Time
	ok, failed  atomic.Int64
	mu          sync.Mutex
	codes       map[int]int64
	first       string
	from, until time.Duration
}

func (t *tally) get(c *http.Client, url string) {
	sent := time.Since(t.start)
	resp, err := c.Get(url)
	var body []byte
	if err == nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		if t.codes == nil {
			t.codes = map[int]int64{}
		}
		t.codes[resp.StatusCode]++
	}
	if err == nil && resp.StatusCode < 500 {
		t.ok.Add(1)
		return
	}
	t.failed.Add(1)
	if t.first == "" {
		t.first = fmt.Sprint(err)
		if err == nil {
			t.first = fmt.Sprintf("%s, Kiln-Backend %q, Kiln-Missing %q: %q", resp.Status, resp.Header.Get("Kiln-Backend"), resp.Header.Get("Kiln-Missing"), body)
		}
		t.from = sent
	}
	t.from, t.until = min(t.from, sent), max(t.until, sent)
}

func (t *tally) loaded() Loaded {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Loaded{OK: t.ok.Load(), Failed: t.failed.Load(), First: t.first, From: t.from, Until: t.until, Codes: maps.Clone(t.codes)}
}

// Load sends GETs of url from n clients at once, each request bounded by
// timeout, until stop is closed, and returns once every client has
// stopped: the load that tests of draining and restarts put on an entry.
func Load(url string, n int, timeout time.Duration, stop <-chan struct{}) Loaded {
	t := tally{start: time.Now()}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := &http.Client{Timeout: timeout}
			for {
				select {
				case <-stop:
					return
				default:
				}
				t.get(c, url)
			}
		})
	}
	wg.Wait()
	return t.loaded()
}

// Paced sends rate GETs of url a second, each bounded by timeout, whether
// or not earlier ones have been answered, until stop is closed, and
// returns once every request has ended: a steady load, as a service sees,
// that a slow answer does not slow.
func Paced(url string, rate int, timeout time.Duration, stop <-chan struct{}) Loaded {
	t := tally{start: time.Now()}
	var wg sync.WaitGroup
	c := &http.Client{Timeout: timeout}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			wg.Wait()
			return t.loaded()
		case <-tick.C:
			wg.Go(func() { t.get(c, url) })
		}
	}
}

// StartPaced starts Paced in the background and returns what stops it and
// returns what it saw; calling that again returns the same, so a test can
// both defer it and call it.
func StartPaced(url string, rate int, timeout time.Duration) (stop func() Loaded) {
	quit := make(chan struct{})
	loaded := make(chan Loaded, 1)
	go func() { loaded <- Paced(url, rate, timeout, quit) }()
	var once sync.Once
	var l Loaded
	return func() Loaded {
		once.Do(func() {
			close(quit)
			l = <-loaded
		})
		return l
	}
}

// Check is nil when no request failed and at least min were answered,
// else an error saying how many of each, and the first failure.
func (l Loaded) Check(min int64) error {
	if l.Failed > 0 || l.OK < min {
		return fmt.Errorf("%d answered, %d failed, sent from %s to %s into the load (first: %s); want none failed and at least %d answered",
			l.OK, l.Failed, l.From.Round(time.Millisecond), l.Until.Round(time.Millisecond), l.First, min)
	}
	return nil
}
