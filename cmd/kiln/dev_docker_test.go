package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// untilAnswer asks url until it answers want, and returns how long that
// took from since.
func untilAnswer(t *testing.T, url, want string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for time.Since(since) < within {
		if got := answer(t, url); got == want {
			return time.Since(since)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("GET %s did not answer %q within %s (it answers %q)", url, want, within, answer(t, url))
	return 0
}

// TestDevOnDockerSwapsUnderLoad is TestDevSwapsEachSaveUnderLoad on the
// Docker target: three saves (a fourth shard, an edit to an imported
// package, a save by rename) each roll the containers over to the new
// build while 200 requests a second reach the entry, on one port; a
// fourth, whose programs crash on start, is rolled back saying why; no
// request fails; Ctrl-C removes every container and the network.
func TestDevOnDockerSwapsUnderLoad(t *testing.T) {
	c := e2e.Docker(t)
	dir := devModule(t)
	cmd, out, entry := startDev(t, dir, "--target", "docker")
	if got := answer(t, entry+"/kv/x"); got != "no such key: x" {
		t.Fatalf("GET /kv/x = %q", got)
	}
	stopLoad := testbin.StartPaced(entry+"/kv/x", 200, 5*time.Second)
	defer stopLoad()
	swapTime := regexp.MustCompile(`→ swap (\d+\.\d+ s) →`)

	// 1. The main package: a fourth shard, started before the router
	// routes to it; every shard's count changes too.
	edit(t, filepath.Join(dir, "main.go"), "shards := 3", "shards := 4")
	l := out.waitFor(t, `^kiln: change main\.go → build .* → swap .* → serving`, 2*time.Minute)
	if !strings.Contains(l, "replaced 4: kv/shard-0, kv/shard-1, kv/shard-2, kv/router-0; started 1: kv/shard-3") {
		t.Errorf("after adding a shard: %s; want the three shards and the router replaced, and kv/shard-3 started", l)
	}
	t.Logf("a fourth shard: swap %s", swapTime.FindStringSubmatch(l)[1])
	// 2. An imported package of the same module, and 3. a save by rename,
	// as JetBrains' safe write does it.
	for i, tc := range []struct{ from, to string }{{"no such key: ", "missing key: "}, {"missing key: ", "absent key: "}} {
		saved := time.Now()
		if i == 0 {
			edit(t, filepath.Join(dir, "store/kv.go"), tc.from, tc.to)
		} else {
			b, _ := os.ReadFile(filepath.Join(dir, "store/kv.go"))
			tmp := filepath.Join(dir, "store/kv.go___jb_tmp___")
			write(t, tmp, strings.Replace(string(b), tc.from, tc.to, 1))
			if err := os.Rename(tmp, filepath.Join(dir, "store/kv.go")); err != nil {
				t.Fatal(err)
			}
		}
		took := untilAnswer(t, entry+"/kv/x", tc.to+"x", saved, 2*time.Minute)
		l := out.waitFor(t, `^kiln: change store/kv\.go → build .* → serving`, 2*time.Minute)
		if !strings.Contains(l, "(replaced 5: ") {
			t.Errorf("after editing package store: %s; want the 5 programs replaced", l)
		}
		t.Logf("%q: new answer %s after the save (on the key's shard, mid-roll), every program %s after it; %s", tc.to, took.Round(10*time.Millisecond), time.Since(saved).Round(10*time.Millisecond), strings.TrimPrefix(l, "kiln: "))
	}
	// 4. A version that builds but cannot start: the engine's restart of
	// its first new program is seen, that program removed, and the last
	// good build keeps serving.
	edit(t, filepath.Join(dir, "store/kv.go"), "\"net/http\"\n", "\"net/http\"\n\t\"os\"\n")
	edit(t, filepath.Join(dir, "store/kv.go"), "func New() http.Handler {", "func New() http.Handler {\n\tif os.Getenv(\"KILN_ROLE\") == \"leaf\" {\n\t\tpanic(\"this version cannot start\")\n\t}")
	l = out.waitFor(t, `^kiln: change store/kv\.go → build .* → swap failed after .* rolled back; the last good build keeps serving:`, 2*time.Minute)
	t.Logf("a version that cannot start: %s %s", strings.TrimPrefix(l, "kiln: "), out.waitFor(t, `pod kv-shard-0: its new program exited with status 2 before it served; the old one keeps serving`, 5*time.Second))
	out.waitFor(t, `panic: this version cannot start`, 5*time.Second)
	if got := answer(t, entry+"/kv/x"); got != "absent key: x" {
		t.Errorf("after a version that cannot start: GET /kv/x = %q, want the last good build's answer", got)
	}
	ld := stopLoad()
	t.Logf("load across the swaps: %d answered, %d failed", ld.OK, ld.Failed)
	if err := ld.Check(500); err != nil {
		t.Errorf("load across the swaps: %v", err)
	}
	if err := testbin.Interrupt(cmd, 2*time.Minute); err != nil {
		t.Fatalf("kiln dev --target docker after Ctrl-C: %v\n%s", err, out)
	}
	out.waitFor(t, `^kiln: kv removed from the Docker engine \(\d+ objects\)`, 5*time.Second)
	if left := leftovers(t, c, "kv"); len(left) > 0 {
		t.Fatalf("left after Ctrl-C: %v", left)
	}
}
