package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/spec"
)

// TestShardStorageKeepsEachClaimAcrossScalingPodLossAndDown deploys a
// shard service with storage to the test cluster, whose claims the
// controller-manager's hostPath provisioner binds, and checks that each
// shard keeps its own claim (by UID) through a scale from 3 to 4 shards, a
// deleted pod, a scale down and kiln down, until DeleteData.
func TestShardStorageKeepsEachClaimAcrossScalingPodLossAndDown(t *testing.T) {
	cfg := e2e.Cluster(t)
	c := testCluster(t, cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deploy := func(shards int) {
		t.Helper()
		app := &spec.App{Name: "kvstore", Services: []spec.Service{{
			Name: "kvstore", Shard: &spec.Shard{Shards: shards, Key: spec.Key{PathSegment: 2}}, Storage: &spec.Storage{Size: "1Gi"},
		}}}
		app.SetDefaults()
		objs, err := Render(app, Options{Image: "registry.example/kvstore:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, app.Name, objs); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(ctx, objs, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// claims are the app's claims, name to UID, once each is bound.
	claims := func() map[string]string {
		t.Helper()
		for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
			list, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory("kvstore")})
			if err != nil {
				t.Fatal(err)
			}
			out, bound := map[string]string{}, true
			for _, pvc := range list.Items {
				out[pvc.Name] = string(pvc.UID)
				bound = bound && pvc.Status.Phase == "Bound"
			}
			if bound || time.Since(start) > 30*time.Second {
				return out
			}
		}
	}
	// mounts says which claim each pod mounts as its storage.
	mounts := func() map[string]string {
		t.Helper()
		pods, err := cs.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory("kvstore") + "," + LabelComponent + "=leaf"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range pods.Items {
			for _, v := range p.Spec.Volumes {
				if v.Name == storageVolume && v.PersistentVolumeClaim != nil {
					out[p.Name] = v.PersistentVolumeClaim.ClaimName
				}
			}
		}
		return out
	}
	names := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("data-kvstore-shard-%d", i))
		}
		return out
	}

	deploy(3)
	three := claims()
	if got := slices.Sorted(maps.Keys(three)); !slices.Equal(got, names(3)) {
		t.Fatalf("claims after deploying 3 shards = %v, want %v", got, names(3))
	}
	for pod, claim := range mounts() {
		if want := "data-" + pod; claim != want {
			t.Errorf("pod %s mounts claim %s, want %s: an instance mounts only its own volume", pod, claim, want)
		}
	}

	deploy(4)
	four := claims()
	if got := slices.Sorted(maps.Keys(four)); !slices.Equal(got, names(4)) {
		t.Fatalf("claims after scaling to 4 shards = %v, want %v", got, names(4))
	}
	for name, uid := range three {
		if four[name] != uid {
			t.Errorf("claim %s is %s after scaling up, was %s: want the same volume kept", name, four[name], uid)
		}
	}

	// A deleted pod comes back, with its name, on its claim.
	pods := cs.CoreV1().Pods(c.Namespace)
	old, err := pods.Get(ctx, "kvstore-shard-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, old.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		p, err := pods.Get(ctx, old.Name, metav1.GetOptions{})
		if err == nil && p.UID != old.UID && p.Status.Phase == "Running" {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("pod %s was not replaced within a minute", old.Name)
		}
	}
	if got := mounts()["kvstore-shard-1"]; got != "data-kvstore-shard-1" {
		t.Errorf("the replacement of kvstore-shard-1 mounts %q, want data-kvstore-shard-1", got)
	}
	if after := claims(); after["data-kvstore-shard-1"] != four["data-kvstore-shard-1"] {
		t.Errorf("the replacement's claim is %s, was %s: want the same volume", after["data-kvstore-shard-1"], four["data-kvstore-shard-1"])
	}

	// Scaling down and kiln down keep every claim (retain is the
	// default); only DeleteData deletes them.
	deploy(2)
	if got := claims(); !maps.Equal(got, four) {
		t.Errorf("claims after scaling down to 2 = %v, want the 4 kept: %v", got, four)
	}
	if _, err := c.Down(ctx, "kvstore"); err != nil {
		t.Fatal(err)
	}
	if got := claims(); !maps.Equal(got, four) {
		t.Errorf("claims after kiln down = %v, want the 4 kept: %v", got, four)
	}
	deleted, err := c.DeleteData(ctx, "kvstore")
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 4 {
		t.Errorf("DeleteData deleted %v, want the 4 claims", deleted)
	}
}
