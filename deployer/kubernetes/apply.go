package kubernetes

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is who server-side apply records as the owner of kiln's
// fields.
const FieldManager = "kiln"

// managed are the kinds kiln renders, and so the kinds pruning lists.
var managed = []schema.GroupVersionResource{
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Version: "v1", Resource: "services"},
	{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"},
	{Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"},
	{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Version: "v1", Resource: "configmaps"},
}

// ClientOptions find a cluster the way kubectl does: --kubeconfig, then
// KUBECONFIG, then ~/.kube/config; --context picks a context.
type ClientOptions struct {
	Kubeconfig string
	Context    string
	Namespace  string
}

// Cluster is a connection to one namespace of a cluster.
type Cluster struct {
	Namespace string
	dyn       dynamic.Interface
	mapper    meta.RESTMapper
	out       io.Writer
}

// Connect opens a connection; progress goes to out.
func Connect(o ClientOptions, out io.Writer) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: no usable kubeconfig (set --kubeconfig or KUBECONFIG): %w", err)
	}
	ns := o.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, err
		}
	}
	return connect(cfg, ns, out)
}

func connect(cfg *rest.Config, ns string, out io.Writer) (*Cluster, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 200, 400 // kiln sends bursts of small requests
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return &Cluster{Namespace: ns, dyn: dyn, mapper: mapper, out: out}, nil
}

// Result says what an apply did.
type Result struct {
	Applied []string // Kind/name
	Changed []string // those whose resourceVersion changed
	Pruned  []string
}

// applyWorkers bounds concurrent requests: enough to hide round trips,
// few enough to stay inside client-side rate limits.
const applyWorkers = 16

// Apply applies objs with server-side apply as field manager "kiln", then
// deletes the objects of the same app that objs no longer contain.
func (c *Cluster) Apply(ctx context.Context, app string, objs []metav1.Object) (*Result, error) {
	type outcome struct {
		id      string
		changed bool
		err     error
	}
	out := make([]outcome, len(objs))
	sem := make(chan struct{}, applyWorkers)
	var wg sync.WaitGroup
	for i, o := range objs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i].id, out[i].changed, out[i].err = c.applyOne(ctx, o)
		}()
	}
	wg.Wait()

	res := &Result{}
	keep := map[string]bool{}
	for _, r := range out {
		if r.err != nil {
			return res, r.err
		}
		keep[r.id] = true
		res.Applied = append(res.Applied, r.id)
		if r.changed {
			res.Changed = append(res.Changed, r.id)
			fmt.Fprintf(c.out, "kiln: applied %s\n", r.id)
		}
	}
	pruned, err := c.prune(ctx, app, keep)
	res.Pruned = pruned
	return res, err
}

func (c *Cluster) applyOne(ctx context.Context, o metav1.Object) (string, bool, error) {
	u, err := c.unstructured(o)
	if err != nil {
		return "", false, err
	}
	id := u.GetKind() + "/" + u.GetName()
	ri, err := c.resource(u)
	if err != nil {
		return id, false, err
	}
	var before *unstructured.Unstructured
	if cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
		before = cur
	}
	got, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil && before != nil && u.GetKind() == "Job" && apierrors.IsInvalid(err) {
		return id, false, fmt.Errorf("applying %s: a Job's pod template and completions cannot change once it exists; delete it (kiln down, or kubectl delete job %s) to run the changed job: %w", id, u.GetName(), err)
	}
	if err != nil {
		return id, false, fmt.Errorf("applying %s: %w", id, err)
	}
	return id, changed(before, got), nil
}

// changed reports whether an apply changed the object. Controllers update
// status all the time, so where there is a generation (bumped by spec
// changes only) it decides.
func changed(before, after *unstructured.Unstructured) bool {
	switch {
	case before == nil:
		return true
	case after.GetKind() == "Lease":
		// Its holders renew it every few seconds; kiln sets only labels.
		return !maps.Equal(before.GetLabels(), after.GetLabels())
	case after.GetGeneration() != 0:
		return before.GetGeneration() != after.GetGeneration()
	}
	return before.GetResourceVersion() != after.GetResourceVersion()
}

// unstructured converts a rendered object, placing it in the namespace.
func (c *Cluster) unstructured(o metav1.Object) (*unstructured.Unstructured, error) {
	m, err := clean(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetNamespace(c.Namespace)
	return u, nil
}

func (c *Cluster) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the cluster does not serve %s: %w", gvk, err)
	}
	return c.dyn.Resource(m.Resource).Namespace(c.Namespace), nil
}

func inventory(app string) string {
	return LabelInstance + "=" + app + "," + LabelManagedBy + "=" + ManagedBy
}

// prune deletes the app's objects that are not in keep.
func (c *Cluster) prune(ctx context.Context, app string, keep map[string]bool) ([]string, error) {
	var pruned []string
	for _, gvr := range managed {
		list, err := c.dyn.Resource(gvr).Namespace(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory(app)})
		if err != nil {
			return pruned, fmt.Errorf("listing %s to prune: %w", gvr.Resource, err)
		}
		for _, item := range list.Items {
			id := item.GetKind() + "/" + item.GetName()
			// An object another one owns is its owner's to delete: the
			// Jobs a CronJob starts carry its template's labels.
			if keep[id] || len(item.GetOwnerReferences()) > 0 {
				continue
			}
			err := c.dyn.Resource(gvr).Namespace(c.Namespace).Delete(ctx, item.GetName(), metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
			if err != nil && !apierrors.IsNotFound(err) {
				return pruned, fmt.Errorf("pruning %s: %w", id, err)
			}
			fmt.Fprintf(c.out, "kiln: pruned %s\n", id)
			pruned = append(pruned, id)
		}
	}
	slices.Sort(pruned)
	return pruned, nil
}

// Down deletes every object of app and waits until they are gone, pods
// included.
func (c *Cluster) Down(ctx context.Context, app string) ([]string, error) {
	deleted, err := c.prune(ctx, app, nil)
	if err != nil {
		return deleted, err
	}
	pods := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	for {
		left := 0
		for _, gvr := range append(slices.Clone(managed), pods) {
			list, err := c.dyn.Resource(gvr).Namespace(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory(app)})
			if err != nil {
				return deleted, err
			}
			left += len(list.Items)
		}
		if left == 0 {
			return deleted, nil
		}
		select {
		case <-ctx.Done():
			return deleted, fmt.Errorf("%d objects of %s still exist: %w", left, app, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DeleteData deletes the claims of app's storage, which its StatefulSets
// keep when the app is removed unless its storage's on_delete says
// otherwise, and returns their names.
func (c *Cluster) DeleteData(ctx context.Context, app string) ([]string, error) {
	claims := schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	list, err := c.dyn.Resource(claims).Namespace(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: inventory(app)})
	if err != nil {
		return nil, fmt.Errorf("listing the claims of %s: %w", app, err)
	}
	var deleted []string
	for _, item := range list.Items {
		err := c.dyn.Resource(claims).Namespace(c.Namespace).Delete(ctx, item.GetName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return deleted, fmt.Errorf("deleting PersistentVolumeClaim/%s: %w", item.GetName(), err)
		}
		fmt.Fprintf(c.out, "kiln: deleted PersistentVolumeClaim/%s\n", item.GetName())
		deleted = append(deleted, "PersistentVolumeClaim/"+item.GetName())
	}
	return deleted, nil
}

// RolloutError says which workload did not roll out, and why.
type RolloutError struct {
	Object string // Kind/name
	Reason string
}

func (e *RolloutError) Error() string { return e.Object + " did not roll out: " + e.Reason }

// Wait waits until every Deployment and StatefulSet in objs has all its
// replicas updated and ready, and every Job has completed, printing
// progress as it changes. A Job that fails is a *JobError naming a failed
// pod and why; a CronJob is not waited for.
func (c *Cluster) Wait(ctx context.Context, objs []metav1.Object, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var pending []*unstructured.Unstructured
	for _, o := range objs {
		u, err := c.unstructured(o)
		if err != nil {
			return err
		}
		if k := u.GetKind(); k == "Deployment" || k == "StatefulSet" || k == "Job" {
			pending = append(pending, u)
		}
	}
	last := map[string]string{}
	for len(pending) > 0 {
		var still []*unstructured.Unstructured
		for _, u := range pending {
			ri, err := c.resource(u)
			if err != nil {
				return err
			}
			cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				if ctx.Err() != nil {
					// The deadline came during the read: that is a
					// timeout, not a finished rollout.
					return &RolloutError{Object: u.GetKind() + "/" + u.GetName(), Reason: c.whyNotReady(context.Background(), u, timeout)}
				}
				return fmt.Errorf("reading %s/%s: %w", u.GetKind(), u.GetName(), err)
			}
			id := u.GetKind() + "/" + u.GetName()
			var done bool
			var progress string
			if u.GetKind() == "Job" {
				var failed map[string]any
				done, progress, failed = jobDone(cur)
				if last[id] != progress {
					fmt.Fprintf(c.out, "kiln: job %s: %s\n", id, progress)
					last[id] = progress
				}
				if failed != nil {
					return &JobError{Object: id, Reason: c.whyJobFailed(ctx, cur, failed)}
				}
			} else {
				done, progress = rolledOut(cur)
				if last[id] != progress {
					fmt.Fprintf(c.out, "kiln: rollout %s: %s\n", id, progress)
					last[id] = progress
				}
			}
			if !done {
				still = append(still, cur)
			}
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			u := pending[0]
			return &RolloutError{Object: u.GetKind() + "/" + u.GetName(), Reason: c.whyNotReady(context.Background(), u, timeout)}
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// rolledOut reads a workload's status the way kubectl rollout status does.
func rolledOut(u *unstructured.Unstructured) (bool, string) {
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	want, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if !found {
		want = 1
	}
	updated, _, _ := unstructured.NestedInt64(u.Object, "status", "updatedReplicas")
	ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
	if u.GetKind() == "Deployment" {
		ready, _, _ = unstructured.NestedInt64(u.Object, "status", "availableReplicas")
	}
	progress := fmt.Sprintf("%d/%d updated, %d/%d ready", updated, want, ready, want)
	return observed >= gen && updated >= want && ready >= want, progress
}

// whyNotReady finds the most telling reason a workload is not ready: a
// failed Deployment condition, or the first pod that is unscheduled or
// waiting.
func (c *Cluster) whyNotReady(ctx context.Context, u *unstructured.Unstructured, timeout time.Duration) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, cond := range conds {
		m, _ := cond.(map[string]any)
		if (m["type"] == "Progressing" && m["status"] == "False") || (m["type"] == "ReplicaFailure" && m["status"] == "True") {
			return fmt.Sprintf("condition %v=%v, %v: %v", m["type"], m["status"], m["reason"], m["message"])
		}
	}
	sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	var parts []string
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	pods, err := c.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(c.Namespace).
		List(ctx, metav1.ListOptions{LabelSelector: strings.Join(parts, ",")})
	if err == nil {
		for _, p := range pods.Items {
			pconds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
			for _, cond := range pconds {
				m, _ := cond.(map[string]any)
				if m["status"] == "False" && (m["type"] == "PodScheduled" || m["type"] == "Ready") && m["reason"] != nil {
					return fmt.Sprintf("pod %s: condition %v=False, %v: %v", p.GetName(), m["type"], m["reason"], m["message"])
				}
			}
		}
		if len(pods.Items) == 0 {
			return fmt.Sprintf("no pods after %s (check the workload's events)", timeout)
		}
	}
	_, progress := rolledOut(u)
	return fmt.Sprintf("not ready after %s (%s)", timeout, progress)
}
