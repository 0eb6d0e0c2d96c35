package examples_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
)

// putKeys writes n keys through the entry and returns the shard that took
// each, as Kiln-Backend names it.
func putKeys(t *testing.T, url string, n int) map[string]string {
	t.Helper()
	keys, err := testbin.PutKeys(url, n)
	if err != nil {
		t.Error(err)
	}
	return keys
}

func TestKVStoreKeepsEveryKeyThroughAKilledShardAndARestartedApp(t *testing.T) {
	forms(t, "kvstore", func(t *testing.T, form string) {
		state := t.TempDir()
		d, url := deployTo(t, form, testWriter{t}, local.EnvStateDir+"="+state)
		keys := putKeys(t, url, 500)

		// kill -9 one shard: its replacement reloads its keys from disk.
		old := process(t, d, "kvstore/shard-1")
		if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ofShard1 := map[string]string{}
		for k, b := range keys {
			if b == "shard-1" {
				ofShard1[k] = b
			}
		}
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			if p := process(t, d, "kvstore/shard-1"); p.PID != 0 && p.PID != old.PID {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("shard-1 was not restarted within 10s")
			}
		}
		if m := testbin.MissingKeys(url, ofShard1); len(m) > 0 {
			t.Errorf("after kill -9, the restarted shard-1 lacks %d of its %d keys: %v", len(m), len(ofShard1), m[:min(len(m), 5)])
		}

		// The whole app stopped and started again on the same state.
		d.Stop()
		_, url = deployTo(t, form, testWriter{t}, local.EnvStateDir+"="+state)
		if m := testbin.MissingKeys(url, keys); len(m) > 0 {
			t.Errorf("after a restart of the app, %d of 500 keys are missing: %v", len(m), m[:min(len(m), 5)])
		}

		// Instance i's directory is i's alone, and nobody else's to read.
		for i := range 3 {
			dir := local.DataDir(state, "kvstore", fmt.Sprintf("shard-%d", i))
			b, err := os.ReadFile(filepath.Join(dir, "instance"))
			if want := fmt.Sprintf("kvstore/shard-%d", i); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("the marker of %s says %q (%v), want %q", dir, b, err, want)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s has mode %v (%v), want 0700", dir, fi.Mode().Perm(), err)
			}
		}
	})
}

func TestKVStoreHandsKeysOverWhenShardsAreAdded(t *testing.T) {
	state := t.TempDir()
	d, url := deployTo(t, "kvstore", testWriter{t}, local.EnvStateDir+"="+state)
	keys := putKeys(t, url, 500)
	d.Stop()

	out := &testbin.Buffer{}
	_, url = deployTo(t, "kvstore", io.MultiWriter(out, testWriter{t}), local.EnvStateDir+"="+state, "KV_SHARDS=4")
	var m []string
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if m = testbin.MissingKeys(url, keys); len(m) == 0 {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("15s after going from 3 to 4 shards, %d of 500 keys are missing: %v", len(m), m[:min(len(m), 5)])
		}
	}
	moved := 0
	for key, was := range keys {
		resp, _ := do(t, "GET", url+"/kv/"+key, "")
		if now := resp.Header.Get(patterns.HeaderBackend); now != was {
			moved++
			if now != "shard-3" {
				t.Errorf("key %s moved from %s to %s, want only to the new shard-3", key, was, now)
			}
		}
	}
	// Consistent hashing moves about 1/4 of the keys to the new shard.
	t.Logf("%d of 500 keys moved to shard-3", moved)
	if moved < 80 || moved > 170 {
		t.Errorf("%d of 500 keys moved, want about 125", moved)
	}
	if !strings.Contains(out.String(), "handed keys over to their new shards") {
		t.Errorf("no shard said it handed keys over:\n%s", out.String())
	}
	// The fourth shard got a volume of its own; the three kept theirs.
	for i := range 4 {
		if _, err := os.Stat(filepath.Join(local.DataDir(state, "kvstore", fmt.Sprintf("shard-%d", i)), "kv.db")); err != nil {
			t.Errorf("shard-%d's store: %v", i, err)
		}
	}
}
