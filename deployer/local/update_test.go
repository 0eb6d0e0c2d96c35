package local

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// kvTopology is examples/kv's topology with n shards.
func kvTopology(t *testing.T, n int) *patterns.Topology {
	t.Helper()
	app := &spec.App{Name: "kv", Services: []spec.Service{{Name: "kv", Shard: &spec.Shard{Shards: n, Key: spec.Key{PathSegment: 2}}}}}
	app.SetDefaults()
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// copyBinary copies bin to a new path in dir, as a rebuild gives.
func copyBinary(t *testing.T, bin, dir string) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(bin))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

func pids(d *Deployment) map[string]int {
	out := map[string]int{}
	for _, p := range d.Processes() {
		out[p.Name] = p.PID
	}
	return out
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

// TestUpdateUnderLoadRefusesNothing swaps every process of kv three times
// (a new binary, then a fifth shard, then back to four) under a steady
// 200 requests a second on the entry: no request fails, the entry's
// address never changes, and each swap touches only what changed.
func TestUpdateUnderLoadRefusesNothing(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./examples/kv")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "KV_SHARDS=4")
	d, err := Start(context.Background(), kvTopology(t, 4), Options{Binary: bin, Env: env, Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	entry := d.Endpoints()[0].URL
	put(t, entry+"/kv/hello", "world")

	stopLoad := testbin.StartPaced(entry+"/kv/hello", 200, 5*time.Second)
	defer stopLoad()
	for _, tc := range []struct {
		name             string
		shards           int
		bin              string
		replaced, starts []string
		stops            []string
	}{
		{"new binary", 4, copyBinary(t, bin, filepath.Join(dir, "v2")),
			[]string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/shard-3", "kv/router-0"}, nil, nil},
		// Every leaf is told the shard count (sdk.Self), so all restart.
		{"a fifth shard", 5, "",
			[]string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/shard-3", "kv/router-0"}, []string{"kv/shard-4"}, nil},
		{"back to four", 4, "",
			[]string{"kv/shard-0", "kv/shard-1", "kv/shard-2", "kv/shard-3", "kv/router-0"}, nil, []string{"kv/shard-4"}},
	} {
		time.Sleep(300 * time.Millisecond)
		if tc.bin != "" {
			bin = tc.bin
		}
		before := pids(d)
		start := time.Now()
		sw, err := d.Update(context.Background(), kvTopology(t, tc.shards), Options{Binary: bin, Env: append(os.Environ(), "KV_SHARDS="+strconv.Itoa(tc.shards))})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		t.Logf("%s: swapped in %s: %+v", tc.name, time.Since(start).Round(time.Millisecond), sw)
		if !sameSet(sw.Replaced, tc.replaced) || !sameSet(sw.Started, tc.starts) || !sameSet(sw.Stopped, tc.stops) {
			t.Errorf("%s: swap %+v, want replaced %v, started %v, stopped %v", tc.name, sw, tc.replaced, tc.starts, tc.stops)
		}
		after := pids(d)
		for name, pid := range after {
			if before[name] == 0 {
				continue
			}
			if slices.Contains(tc.replaced, name) == (pid == before[name]) {
				t.Errorf("%s: %s was pid %d, now %d", tc.name, name, before[name], pid)
			}
		}
		if len(after) != tc.shards+1 {
			t.Errorf("%s: %d processes after the swap, want %d", tc.name, len(after), tc.shards+1)
		}
		if got := d.Endpoints()[0].URL; got != entry {
			t.Errorf("%s: entry moved from %s to %s", tc.name, entry, got)
		}
	}
	time.Sleep(300 * time.Millisecond)
	l := stopLoad()
	t.Logf("load across the swaps: %d ok, %d failed", l.OK, l.Failed)
	if err := l.Check(200); err != nil {
		t.Fatalf("load across the swaps: %v", err)
	}
}

// TestUpdateTouchesOnlyWhatChanged: in examples/shop, a new binary for
// carts alone replaces carts' four processes and no other.
func TestUpdateTouchesOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./examples/shop")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := testbin.Topology(bin)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(context.Background(), topo, Options{Binary: bin, Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	before := pids(d)
	v2 := copyBinary(t, bin, filepath.Join(dir, "v2"))
	sw, err := d.Update(context.Background(), topo, Options{Binary: bin, Binaries: map[string]string{"carts": v2}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"carts/shard-0", "carts/shard-1", "carts/shard-2", "carts/router-0"}
	if !sameSet(sw.Replaced, want) || len(sw.Started)+len(sw.Stopped) > 0 {
		t.Errorf("swap %+v, want only %v replaced", sw, want)
	}
	for name, pid := range pids(d) {
		if strings.HasPrefix(name, "carts/") == (pid == before[name]) {
			t.Errorf("%s was pid %d, now %d", name, before[name], pid)
		}
	}
	// Nothing changed: nothing is touched.
	if sw, err := d.Update(context.Background(), topo, Options{Binary: bin, Binaries: map[string]string{"carts": v2}}); err != nil || sw.Changed() {
		t.Errorf("the same update again = %+v, %v; want no change", sw, err)
	}
}

// TestUpdateThatFailsKeepsTheOldServing: a new binary that exits before it
// serves, and one that never says it serves, are stopped; the old
// processes keep serving, and the error names the process and its output.
func TestUpdateThatFailsKeepsTheOldServing(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Build(dir, "./examples/kv")
	if err != nil {
		t.Fatal(err)
	}
	crasher := filepath.Join(dir, "crasher")
	os.WriteFile(crasher, []byte("#!/bin/sh\necho 'panic: bad config' >&2\nexit 3\n"), 0o755)
	sleeper := filepath.Join(dir, "sleeper")
	os.WriteFile(sleeper, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755)
	d, err := Start(context.Background(), kvTopology(t, 3), Options{Binary: bin, Output: io.Discard, ReadyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The new processes shared the old ones' sockets: the old ones
		// still stop at once.
		start := time.Now()
		d.Stop()
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Stop took %s after failed updates", took)
		}
	}()
	entry := d.Endpoints()[0].URL
	put(t, entry+"/kv/a", "1")
	for _, tc := range []struct {
		bin  string
		want []string
	}{
		{crasher, []string{"the new kv/shard-0 exited (exit status 3)", "the old one keeps serving", "panic: bad config"}},
		{sleeper, []string{"the new kv/shard-0 did not serve within 1s"}},
	} {
		before := pids(d)
		start := time.Now()
		_, err := d.Update(context.Background(), kvTopology(t, 3), Options{Binary: tc.bin})
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Update to %s = %v, want it to say %q", filepath.Base(tc.bin), err, w)
			}
		}
		t.Logf("Update to %s failed after %s", filepath.Base(tc.bin), time.Since(start).Round(time.Millisecond))
		if after := pids(d); !maps.Equal(before, after) {
			t.Errorf("after a failed Update: pids %v, were %v", after, before)
		}
		resp, err := http.Get(entry + "/kv/a")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "1" {
			t.Errorf("after a failed Update, GET /kv/a = %s %q, want the old store's 1", resp.Status, b)
		}
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
