package kubernetes

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/spec"
)

// TestLeasesApplyUnderRestrictedAndOnlyElectingPodsGetAToken applies an
// app whose services declare leases into a namespace that enforces Pod
// Security "restricted", and follows it through a renewal, a lease and a
// service's leases removed, and kiln down.
func TestLeasesApplyUnderRestrictedAndOnlyElectingPodsGetAToken(t *testing.T) {
	cfg := rest.CopyConfig(e2e.Cluster(t))
	warned := &warnings{}
	cfg.WarningHandler = warned
	c := testCluster(t, cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := cases()["leases"]
	opts := Options{Image: "registry.example/leases:1"}
	objs, err := Render(app, opts)
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
	if err := c.Wait(ctx, objs, time.Minute); err != nil {
		t.Fatal(err)
	}
	if len(warned.msgs) != 0 {
		t.Fatalf("the API server warned: %q", warned.msgs)
	}

	// The pods that take leases, and only they, run as their service
	// account with its token mounted.
	pods, err := cs.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory(app.Name)})
	if err != nil {
		t.Fatal(err)
	}
	accounts := map[string]string{"web/replica": "web-replica", "kv/leaf": "kv-shard"}
	for _, p := range pods.Items {
		who := p.Labels[LabelName] + "/" + p.Labels[LabelComponent]
		want, elects := accounts[who]
		if !elects {
			want = "default"
		}
		token := slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil })
		})
		if p.Spec.ServiceAccountName != want || token != elects {
			t.Errorf("pod %s (%s) runs as %q with a token: %v; want %q, %v", p.Name, who, p.Spec.ServiceAccountName, token, want, elects)
		}
	}
	if len(pods.Items) != 2+3+2+4+2 {
		t.Errorf("%d pods, want 13", len(pods.Items))
	}

	// A holder renewing a Lease is no change of kiln's.
	leases := cs.CoordinationV1().Leases(c.Namespace)
	l, err := leases.Get(ctx, "web.compactor", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holder := "web-replica-0-1-abcd"
	l.Spec.HolderIdentity = &holder
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = c.Apply(ctx, app.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed)+len(res.Pruned) != 0 {
		t.Fatalf("second apply changed %v and pruned %v; want nothing", res.Changed, res.Pruned)
	}
	if l, err = leases.Get(ctx, "web.compactor", metav1.GetOptions{}); err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder {
		t.Fatalf("after the second apply, web.compactor's holder = %v (err %v), want %q: apply must leave the holder's spec alone", l.Spec.HolderIdentity, err, holder)
	}

	// web drops a lease, kv all of them.
	fewer := *app
	fewer.Services = slices.Clone(app.Services)
	fewer.Services[0].Leases = []spec.Lease{app.Services[0].Leases[0]}
	fewer.Services[1].Leases = nil
	objs, err = Render(&fewer, opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.Apply(ctx, app.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	wantPruned := []string{"Lease/kv.rebalance", "Lease/web.index", "Role/kv-shard-leases", "RoleBinding/kv-shard-leases", "ServiceAccount/kv-shard"}
	// kv's shards no longer reach the API server.
	wantChanged := []string{"Deployment/web-replica", "NetworkPolicy/kv-shard", "Role/web-replica-leases", "StatefulSet/kv-shard"}
	if changed := slices.Sorted(slices.Values(res.Changed)); !slices.Equal(res.Pruned, wantPruned) || !slices.Equal(changed, wantChanged) {
		t.Errorf("dropping leases pruned %v and changed %v; want pruned %v, changed %v", res.Pruned, changed, wantPruned, wantChanged)
	}
	role, err := cs.RbacV1().Roles(c.Namespace).Get(ctx, "web-replica-leases", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := role.Rules[0].ResourceNames; !slices.Equal(got, []string{"web.compactor"}) {
		t.Errorf("web's Role names Leases %v, want [web.compactor]", got)
	}
	sts, err := cs.AppsV1().StatefulSets(c.Namespace).Get(ctx, "kv-shard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod := sts.Spec.Template.Spec; pod.ServiceAccountName != "" || *pod.AutomountServiceAccountToken {
		t.Errorf("kv's shards, which take no lease now, run as %q with automountServiceAccountToken %v; want no account and false", pod.ServiceAccountName, *pod.AutomountServiceAccountToken)
	}
	if len(warned.msgs) != 0 {
		t.Fatalf("the API server warned: %q", warned.msgs)
	}

	deleted, err := c.Down(ctx, app.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != len(objs) {
		t.Errorf("down deleted %v; want the %d objects of the app", deleted, len(objs))
	}
}
