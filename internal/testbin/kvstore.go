package testbin

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/patterns"
)

// kvClient bounds each request of PutKeys and MissingKeys.
var kvClient = &http.Client{Timeout: 10 * time.Second}

// PutKeys writes n keys (key-0, key-1, ...) through the entry of
// examples/kvstore at url, 16 at a time, each with the value "value of
// KEY", and returns the shard that took each, as Kiln-Backend names it.
// The error says how many PUTs failed, and how the first did.
func PutKeys(url string, n int) (map[string]string, error) {
	backends := map[string]string{}
	var failed []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		key := fmt.Sprintf("key-%d", i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			backend, err := putKey(url, key)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			backends[key] = backend
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		return backends, fmt.Errorf("%d of %d PUTs failed, the first: %s", len(failed), n, failed[0])
	}
	return backends, nil
}

func putKey(url, key string) (backend string, err error) {
	req, err := http.NewRequest(http.MethodPut, url+"/kv/"+key, strings.NewReader("value of "+key))
	if err != nil {
		return "", err
	}
	resp, err := kvClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("PUT %s: %w", key, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("PUT %s = %d %s", key, resp.StatusCode, b)
	}
	return resp.Header.Get(patterns.HeaderBackend), nil
}

// MissingKeys lists the keys of want (as PutKeys returns them) that
// examples/kvstore at url does not answer with their value, read through
// the entry.
func MissingKeys(url string, want map[string]string) []string {
	var out []string
	for key := range want {
		resp, err := kvClient.Get(url + "/kv/" + key)
		if err != nil {
			out = append(out, key+" ("+err.Error()+")")
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "value of "+key {
			out = append(out, fmt.Sprintf("%s (%d %q)", key, resp.StatusCode, b))
		}
	}
	return out
}
