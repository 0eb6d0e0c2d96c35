package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/internal/e2e"
)

func testCluster(t *testing.T, cfg *rest.Config) *Cluster {
	t.Helper()
	c, err := connect(cfg, e2e.Namespace(t, cfg, "kiln-test"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestApplyEveryCase applies every table case into a namespace that
// enforces Pod Security "restricted", waits for the rollout on kwok nodes,
// and applies again to see that nothing changes.
func TestApplyEveryCase(t *testing.T) {
	cfg := e2e.Cluster(t)
	for name, app := range cases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := testCluster(t, cfg)
			ctx := context.Background()
			objs, err := Render(app, Options{Image: "registry.example/" + name + ":1"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Apply(ctx, app.Name, objs)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Changed) != len(objs) {
				t.Fatalf("first apply created %d of %d objects", len(res.Changed), len(objs))
			}
			// Pods exist and are ready only if admission let them in.
			if err := c.Wait(ctx, objs, time.Minute); err != nil {
				t.Fatal(err)
			}
			res, err = c.Apply(ctx, app.Name, objs)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Changed) != 0 || len(res.Pruned) != 0 {
				t.Fatalf("second apply changed %v and pruned %v; want nothing", res.Changed, res.Pruned)
			}
		})
	}
}

func TestApplyPrunesWhatWasRemoved(t *testing.T) {
	cfg := e2e.Cluster(t)
	c := testCluster(t, cfg)
	ctx := context.Background()
	apps := cases()
	full := apps["shard-sidecar-init"]
	full.Services = append(full.Services, apps["example-hello"].Services[0])
	objs, err := Render(full, Options{Image: "img:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, full.Name, objs); err != nil {
		t.Fatal(err)
	}

	// Drop the sidecar: the pods change, and the policies (no more sidecar
	// port, egress no longer open), nothing is pruned.
	noSidecar := *full
	noSidecar.Services = slices.Clone(full.Services)
	noSidecar.Services[0].Sidecars = nil
	objs, _ = Render(&noSidecar, Options{Image: "img:1"})
	res, err := c.Apply(ctx, full.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pruned) != 0 || !slices.Equal(res.Changed, []string{"StatefulSet/kv-shard", "NetworkPolicy/kv-shard", "Deployment/kv-router", "NetworkPolicy/kv-router"}) {
		t.Fatalf("removing a sidecar changed %v and pruned %v", res.Changed, res.Pruned)
	}
	sts, err := c.dyn.Resource(managed[1]).Namespace(c.Namespace).Get(ctx, "kv-shard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mustJSON(t, sts.Object), "log-agent") {
		t.Fatal("the sidecar is still in the StatefulSet")
	}

	// Drop a whole service: exactly its objects go.
	oneService := noSidecar
	oneService.Services = noSidecar.Services[:1]
	objs, _ = Render(&oneService, Options{Image: "img:1"})
	res, err = c.Apply(ctx, full.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Deployment/hello-replica", "NetworkPolicy/hello-replica", "PodDisruptionBudget/hello-replica", "Service/hello"}
	// The discovery list changes; no other service's pods roll.
	if !slices.Equal(res.Pruned, want) || !slices.Equal(res.Changed, []string{"ConfigMap/" + DiscoveryConfigMap(full.Name)}) {
		t.Fatalf("removing service hello pruned %v and changed %v; want pruned %v, and only the discovery ConfigMap changed", res.Pruned, res.Changed, want)
	}

	deleted, err := c.Down(ctx, full.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != len(objs) {
		t.Fatalf("down deleted %v; want the %d objects left", deleted, len(objs))
	}
}

func TestWaitNamesAWorkloadThatCannotBecomeReady(t *testing.T) {
	cfg := e2e.Cluster(t)
	c := testCluster(t, cfg)
	ctx := context.Background()
	objs, err := Render(cases()["example-kv"], Options{Image: "img:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "nonexistent"}
		}
	}
	if _, err := c.Apply(ctx, "kv", objs); err != nil {
		t.Fatal(err)
	}
	err = c.Wait(ctx, objs, 5*time.Second)
	var re *RolloutError
	if !errorsAs(err, &re) || re.Object != "Deployment/kv-router" || !strings.Contains(re.Reason, "Unschedulable") || !strings.Contains(re.Reason, "node affinity/selector") {
		t.Fatalf("err = %v; want a RolloutError naming Deployment/kv-router as unschedulable", err)
	}
	t.Log(err)
}

func errorsAs(err error, target **RolloutError) bool { return errors.As(err, target) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// warnings collects what the API server warns about.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func TestShopAppliesWithoutWarningAndLosesExactlyARemovedService(t *testing.T) {
	cfg := rest.CopyConfig(e2e.Cluster(t))
	warned := &warnings{}
	cfg.WarningHandler = warned
	c := testCluster(t, cfg)
	ctx := context.Background()
	shop := cases()["example-shop"]
	objs, err := Render(shop, Options{Image: "registry.example/shop:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, shop.Name, objs); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, objs, time.Minute); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Apply(ctx, shop.Name, objs); err != nil || len(res.Changed)+len(res.Pruned) != 0 {
		t.Fatalf("second apply: changed %v, pruned %v, err %v; want nothing", res.Changed, res.Pruned, err)
	}
	if len(warned.msgs) != 0 {
		t.Fatalf("the API server warned: %q", warned.msgs)
	}

	// web's pods learn where carts and catalog are from the ConfigMap.
	cm, err := c.dyn.Resource(managed[len(managed)-1]).Namespace(c.Namespace).Get(ctx, DiscoveryConfigMap(shop.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, cm.Object["data"]), `{"KILN_SERVICES":"web=http://web:8080 carts=http://carts:8080 catalog=http://catalog:8080"}`; got != want {
		t.Fatalf("discovery ConfigMap holds %s, want %s", got, want)
	}

	noCatalog := *shop
	noCatalog.Services = shop.Services[:2]
	objs, err = Render(&noCatalog, Options{Image: "registry.example/shop:1"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(ctx, shop.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	pruned := slices.Sorted(slices.Values(res.Pruned))
	want := []string{"Deployment/catalog-root", "NetworkPolicy/catalog-leaf", "NetworkPolicy/catalog-root", "PodDisruptionBudget/catalog-leaf", "PodDisruptionBudget/catalog-root", "Service/catalog", "Service/catalog-leaf", "StatefulSet/catalog-leaf"}
	if !slices.Equal(pruned, want) || !slices.Equal(res.Changed, []string{"ConfigMap/" + DiscoveryConfigMap(shop.Name)}) {
		t.Fatalf("removing catalog pruned %v and changed %v; want pruned %v, and only the discovery ConfigMap changed", pruned, res.Changed, want)
	}
	if len(warned.msgs) != 0 {
		t.Fatalf("the API server warned: %q", warned.msgs)
	}
}
