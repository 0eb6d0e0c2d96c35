// Command loadgen is the load generator that tests run inside a cluster:
// it sends a steady rate of GETs to a URL for a while, then prints one
// JSON line of what it saw, and exits 1 if any request failed (no answer,
// or an answer that is not 2xx).
//
// Before it counts, it waits (up to -ready) for a first 2xx answer: a
// new pod's first packets may be refused until the cluster's network
// policies know its address, which is no request the service lost.
//
//	loadgen -url http://kv:8080/kv/probe -rate 50 -for 20s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

func main() {
	url := flag.String("url", "", "what to GET (required)")
	rate := flag.Int("rate", 50, "requests a second")
	length := flag.Duration("for", 20*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 5*time.Second, "bound on each request")
	ready := flag.Duration("ready", 30*time.Second, "how long to wait for a first 2xx answer before sending the load")
	flag.Parse()
	if *url == "" || *rate < 1 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -url URL [-rate N] [-for DURATION] [-timeout DURATION]")
		os.Exit(2)
	}
	if err := waitReady(*url, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	stop := testbin.StartPaced(*url, *rate, *timeout)
	time.Sleep(*length)
	l := stop()
	json.NewEncoder(os.Stdout).Encode(l)
	for code := range l.Codes {
		if code < 200 || code > 299 {
			os.Exit(1)
		}
	}
	if l.Failed > 0 || l.OK == 0 {
		os.Exit(1)
	}
}

// waitReady asks url every 100 ms until it answers 2xx, for at most within.
func waitReady(url string, within time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("answered %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no 2xx answer within %s: %w", url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
