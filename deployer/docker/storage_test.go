package docker

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestStorageKeepsEachShardsKeysThroughACrashAndADown runs examples/kvstore
// in containers: each shard's keys survive its program's crash, and kiln
// down and a new deploy, on the volume named after its instance; only
// DeleteData removes the volumes.
func TestStorageKeepsEachShardsKeysThroughACrashAndADown(t *testing.T) {
	const app = "kvstore-data"
	image := exampleImage(t, "kvstore")
	e := engineFor(t, app)
	t.Cleanup(func() { e.DeleteData(context.Background(), app) })
	_, d := apply(t, e, named(example(t, "kvstore"), app), Options{Image: image})
	entry := url(t, d, "kvstore")
	keys := map[string]string{} // key → the shard that took it
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		resp, body := do(t, "PUT", entry+"/kv/"+key, "value of "+key)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT %s = %d %s", key, resp.StatusCode, body)
		}
		keys[key] = resp.Header.Get("Kiln-Backend")
	}
	// lacking lists the keys the entry does not answer with their value.
	lacking := func(entry string) []string {
		var out []string
		for key := range keys {
			resp, body, err := try("GET", entry+"/kv/"+key, 5*time.Second)
			if err != nil || resp.StatusCode != http.StatusOK || body != "value of "+key {
				out = append(out, key)
			}
		}
		return out
	}

	// Each shard mounts the volume of its own instance.
	for i := range 3 {
		pod := fmt.Sprintf("kvstore-shard-%d", i)
		want := "kiln-" + app + "-" + pod + "-data"
		mounts := inspect(t, e, app, pod, containerApp).Mounts
		if !slices.ContainsFunc(mounts, func(m container.MountPoint) bool { return m.Name == want && m.Destination == "/data" }) {
			t.Errorf("pod %s mounts %v, want volume %s at /data", pod, mounts, want)
		}
	}

	// A crash of shard-1's program: the engine restarts it on its volume.
	pid := inspect(t, e, app, "kvstore-shard-1", containerApp).State.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Skipf("killing shard-1's program (pid %d) from the host: %v (the test needs root on the engine's host)", pid, err)
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		ins := inspect(t, e, app, "kvstore-shard-1", containerApp)
		if ins.RestartCount >= 1 && ins.State.Health != nil && ins.State.Health.Status == "healthy" {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("shard-1 was not restarted healthy within 30s")
		}
	}
	if m := lacking(entry); len(m) > 0 {
		t.Errorf("after shard-1 crashed, %d of 100 keys are lacking: %v", len(m), m)
	}

	// Down keeps the data volumes, and only them.
	if _, err := e.Down(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	left := leftovers(t, e, app)
	slices.Sort(left)
	want := []string{"volume kiln-" + app + "-kvstore-shard-0-data", "volume kiln-" + app + "-kvstore-shard-1-data", "volume kiln-" + app + "-kvstore-shard-2-data"}
	if !slices.Equal(left, want) {
		t.Fatalf("after Down: %v, want the three data volumes", left)
	}
	_, d = apply(t, e, named(example(t, "kvstore"), app), Options{Image: image})
	if m := lacking(url(t, d, "kvstore")); len(m) > 0 {
		t.Errorf("after Down and a new deploy, %d of 100 keys are lacking: %v", len(m), m)
	}

	if _, err := e.Down(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	removed, err := e.DeleteData(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, e, app); len(left) > 0 || len(removed) != 3 {
		t.Errorf("DeleteData removed %v and left %v, want the 3 volumes gone", removed, left)
	}
}
