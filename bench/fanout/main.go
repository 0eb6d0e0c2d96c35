// Command fanout is the scatter bench's load generator. It sends GETs, one
// after another on each of -c workers, for -d after a warm-up of -warmup,
// either to one URL (-root: a scatter/gather root) or to every one of
// several URLs at once (-leaves), waiting for all of their answers: the
// fan-out a root does, done by the client itself, which is the limit no
// proxy beats. It prints one line:
//
//	RESULT requests=N rps=R p50_us=… p99_us=… slowest_p50_us=… slowest_p99_us=… errors=E
//
// where slowest_* are, with -leaves, the percentiles over requests of the
// slowest leaf's own latency (0 with -root).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	root := flag.String("root", "", "the URL of a root to GET")
	leaves := flag.String("leaves", "", "comma-separated URLs to GET all at once")
	conns := flag.Int("c", 1, "workers, each with a request in flight")
	dur := flag.Duration("d", 10*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 2*time.Second, "how long to send before measuring")
	flag.Parse()
	var urls []string
	switch {
	case *root != "" && *leaves == "":
		urls = []string{*root}
	case *root == "" && *leaves != "":
		urls = strings.Split(*leaves, ",")
	default:
		fmt.Fprintln(os.Stderr, "fanout: give -root or -leaves")
		os.Exit(2)
	}
	fanout := *leaves != ""
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *conns, DisableCompression: true, ForceAttemptHTTP2: false,
	}}

	start := time.Now()
	measureFrom, end := start.Add(*warmup), start.Add(*warmup+*dur)
	var (
		mu             sync.Mutex
		total, slowest []time.Duration
		failures       int
		wg             sync.WaitGroup
	)
	for range *conns {
		wg.Go(func() {
			var tot, slow []time.Duration
			fails := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				worst, err := ask(client, urls)
				took := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					fails++
					continue
				}
				tot = append(tot, took)
				if fanout {
					slow = append(slow, worst)
				}
			}
			mu.Lock()
			total, slowest, failures = append(total, tot...), append(slowest, slow...), failures+fails
			mu.Unlock()
		})
	}
	wg.Wait()
	fmt.Printf("RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d slowest_p50_us=%d slowest_p99_us=%d errors=%d\n",
		len(total), float64(len(total))/dur.Seconds(), pct(total, 50), pct(total, 99), pct(slowest, 50), pct(slowest, 99), failures)
}

// ask GETs every URL at once and reads every answer; it returns the
// slowest one's latency.
func ask(client *http.Client, urls []string) (time.Duration, error) {
	if len(urls) == 1 {
		return get(client, urls[0])
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		worst time.Duration
		errs  []error
	)
	for _, u := range urls {
		wg.Go(func() {
			took, err := get(client, u)
			mu.Lock()
			worst, errs = max(worst, took), append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return worst, errors.Join(errs...)
}

func get(client *http.Client, u string) (time.Duration, error) {
	start := time.Now()
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return time.Since(start), err
}

// pct is the p-th percentile of ds in microseconds, 0 if there are none.
func pct(ds []time.Duration, p int) int64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)].Microseconds()
}
