package testbin

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Loaded is what Load saw: answers that were 200, the others, and the
// first of those.
type Loaded struct {
	OK, Failed int64
	First      string
}

// Load sends GETs of url from n clients at once, each request bounded by
// timeout, until stop is closed, and returns once every client has
// stopped: the load that tests of draining and restarts put on an entry.
func Load(url string, n int, timeout time.Duration, stop <-chan struct{}) Loaded {
	var ok, failed atomic.Int64
	var first atomic.Value
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
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					first.CompareAndSwap(nil, fmt.Sprint(err, resp))
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	l := Loaded{OK: ok.Load(), Failed: failed.Load()}
	if f, _ := first.Load().(string); f != "" {
		l.First = f
	}
	return l
}
