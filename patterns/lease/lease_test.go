package lease

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// serve runs a table over real HTTP and returns a client for each of n
// processes of service svc, which the table tells apart by pid.
func serve(t *testing.T, table *Table, svc string, n int) []*Client {
	t.Helper()
	srv := httptest.NewServer(table)
	t.Cleanup(srv.Close)
	out := make([]*Client, n)
	for i := range out {
		out[i] = &Client{URL: srv.URL, Service: svc, PID: 1000 + i}
	}
	return out
}

func newTable(t *testing.T, path string) *Table {
	t.Helper()
	table, err := NewTable(path)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func acquire(t *testing.T, c *Client, name string, d time.Duration) *Lease {
	t.Helper()
	// The lease lives as long as Acquire's context: that of the test.
	l, err := c.Acquire(t.Context(), name, d)
	if err != nil {
		t.Fatalf("Acquire(%q) = %v", name, err)
	}
	t.Cleanup(l.Release)
	return l
}

func TestALeaseIsExclusiveAndItsTokensOnlyGrow(t *testing.T) {
	cs := serve(t, newTable(t, ""), "kv", 3)
	var mu sync.Mutex
	holding, most := 0, 0
	var tokens []uint64
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for range 5 {
				l, err := c.Acquire(context.Background(), "compactor", 2*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				holding++
				most = max(most, holding)
				tokens = append(tokens, l.Token())
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				holding--
				mu.Unlock()
				l.Release()
			}
		})
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("at most %d processes held the lease at once, want 1", most)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("tokens in order of acquisition = %v, want each larger than the last", tokens)
		}
	}
	if len(tokens) != 15 {
		t.Errorf("%d acquisitions, want 15", len(tokens))
	}
}

func TestLeasesOfOtherNamesAndServicesAreIndependent(t *testing.T) {
	table := newTable(t, "")
	a := serve(t, table, "a", 1)[0]
	b := serve(t, table, "b", 1)[0]
	acquire(t, a, "x", 2*time.Second)
	acquire(t, a, "y", 2*time.Second)
	acquire(t, b, "x", 2*time.Second) // would block if a's x were b's
}

func TestAHolderThatStopsRenewingLosesTheLeaseAfterItsDuration(t *testing.T) {
	table := newTable(t, "")
	cs := serve(t, table, "kv", 2)
	// A holder that hangs: it acquired through the API but never renews.
	first, err := table.acquire(context.Background(), "kv/l", "hung", 99, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l := acquire(t, cs[1], "l", 2*time.Second)
	waited := time.Since(start)
	if waited < 1500*time.Millisecond || waited > 3*time.Second {
		t.Errorf("the next holder waited %s, want about the lease's 2s", waited)
	}
	if l.Token() <= first {
		t.Errorf("Token() = %d after %d, want larger", l.Token(), first)
	}
}

func TestARenewedLeaseOutlivesItsDuration(t *testing.T) {
	cs := serve(t, newTable(t, ""), "kv", 2)
	l := acquire(t, cs[0], "l", 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cs[1].Acquire(ctx, "l", 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second Acquire while the first holder renews = %v, want it to wait until its context ends", err)
	}
	if err := l.Context().Err(); err != nil {
		t.Errorf("the holder's lease ended: %v", context.Cause(l.Context()))
	}
}

func TestTheDriverFreesTheLeasesOfAProcessThatExited(t *testing.T) {
	table := newTable(t, "")
	cs := serve(t, table, "kv", 2)
	acquire(t, cs[0], "l", time.Minute)
	go func() {
		time.Sleep(200 * time.Millisecond)
		table.ReleasePID(cs[0].PID)
	}()
	start := time.Now()
	acquire(t, cs[1], "l", time.Minute)
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("the next holder waited %s after the holder exited, want at once", waited)
	}
}

func TestAHolderWhoseLeaseWasTakenLearnsItLostIt(t *testing.T) {
	table := newTable(t, "")
	cs := serve(t, table, "kv", 2)
	l := acquire(t, cs[0], "l", 2*time.Second)
	table.ReleasePID(cs[0].PID) // as if the driver thought it gone
	acquire(t, cs[1], "l", 2*time.Second)
	select {
	case <-l.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the deposed holder's lease context did not end")
	}
	if !l.Lost() || !errors.Is(context.Cause(l.Context()), ErrLost) {
		t.Errorf("Cause = %v, want ErrLost", context.Cause(l.Context()))
	}
}

func TestTokensKeepGrowingAcrossRunsOfTheDriver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	c := serve(t, newTable(t, path), "kv", 1)[0]
	l := acquire(t, c, "l", 2*time.Second)
	l.Release()
	first := l.Token()
	c = serve(t, newTable(t, path), "kv", 1)[0]
	if got := acquire(t, c, "l", 2*time.Second).Token(); got <= first {
		t.Errorf("Token() after a restart = %d, want more than %d", got, first)
	}
}

func TestLeadCampaignsAgainAfterLosingAndStopsWithItsContext(t *testing.T) {
	table := newTable(t, "")
	c := serve(t, table, "kv", 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	var tokens []uint64
	done := make(chan error, 1)
	go func() {
		done <- Lead(ctx, c, "l", 2*time.Second, func(ctx context.Context, token uint64) error {
			tokens = append(tokens, token)
			if len(tokens) == 1 {
				table.ReleasePID(c.PID) // lose the first term
			} else {
				cancel()
			}
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Lead() = %v, want nil once its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lead did not return")
	}
	if len(tokens) != 2 || tokens[1] <= tokens[0] {
		t.Errorf("terms' tokens = %v, want two, growing", tokens)
	}
	if h := table.List(); len(h) != 1 || h[0].Holder != "" {
		t.Errorf("List() after Lead returned = %+v, want the lease free", h)
	}
}

func TestLeadReturnsWhatItsFunctionReturnsWhileLeading(t *testing.T) {
	c := serve(t, newTable(t, ""), "kv", 1)[0]
	boom := errors.New("boom")
	if err := Lead(context.Background(), c, "l", 2*time.Second, func(context.Context, uint64) error { return boom }); err != boom {
		t.Errorf("Lead() = %v, want %v", err, boom)
	}
}

func TestDurationsReadsWhatRoleEnvWrites(t *testing.T) {
	got, err := Durations("compactor=15s,index=2s")
	if err != nil || len(got) != 2 || got["compactor"] != 15*time.Second || got["index"] != 2*time.Second {
		t.Errorf("Durations() = %v, %v", got, err)
	}
	for _, bad := range []string{"compactor", "=1s", "x=fast", "x=-1s"} {
		if _, err := Durations(bad); err == nil {
			t.Errorf("Durations(%q) = nil error, want one", bad)
		}
	}
}
