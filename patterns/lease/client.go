package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Client is the Backend of a process on the local target: it takes the
// leases of its service from the driver's Table at URL.
type Client struct {
	// URL is the Table's base URL (EnvURL).
	URL string
	// Service is the service whose leases these are.
	Service string
	// PID is the process the Table frees the leases of when it exits;
	// 0 means this process.
	PID int
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// maxWait bounds one acquire request, so that a Table that went away is
// noticed.
const maxWait = 10 * time.Second

// Acquire implements Backend.
func (c *Client) Acquire(ctx context.Context, name string, d time.Duration) (*Lease, error) {
	pid := c.PID
	if pid == 0 {
		pid = os.Getpid()
	}
	holder := Holder(c.Service, pid)
	base := c.URL + "/leases/" + url.PathEscape(c.Service) + "/" + url.PathEscape(name)
	acquire := base + "?" + url.Values{"holder": {holder}, "pid": {strconv.Itoa(pid)}, "duration": {d.String()}, "wait": {maxWait.String()}}.Encode()
	var token uint64
	retry := 100 * time.Millisecond
	for {
		status, ans, err := c.post(ctx, acquire)
		if err == nil && status == http.StatusOK {
			token = ans.Token
			break
		}
		if err == nil && status != http.StatusConflict {
			return nil, fmt.Errorf("lease %s: the driver's lease table answered %d", name, status)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			// The table is unreachable: wait a little rather than spin.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(retry):
			}
			retry = min(2*retry, d/3)
		}
	}
	held := url.Values{"holder": {holder}, "token": {strconv.FormatUint(token, 10)}}
	release := base + "/release?" + held.Encode()
	held.Set("duration", d.String())
	renew := base + "/renew?" + held.Encode()
	keep := func(ctx context.Context) error {
		return renewer(ctx, d, func(ctx context.Context) (bool, error) {
			status, _, err := c.post(ctx, renew)
			if err != nil {
				return false, err
			}
			if status != http.StatusOK {
				return true, fmt.Errorf("the driver's lease table refused renewal (%d): another process holds it", status)
			}
			return false, nil
		})
	}
	return Hold(ctx, name, token, keep, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.post(ctx, release)
	}), nil
}

func (c *Client) post(ctx context.Context, u string) (int, answer, error) {
	var ans answer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return 0, ans, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, ans, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return 0, ans, err
		}
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, ans, nil
}

// Holder is a fresh holder identity: who holds it (service and process)
// and a random part, so that every acquisition is a holder of its own.
func Holder(who string, pid int) string {
	b := make([]byte, 4)
	rand.Read(b)
	return who + "-" + strconv.Itoa(pid) + "-" + hex.EncodeToString(b)
}
