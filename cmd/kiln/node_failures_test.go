package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
)

// Failures on the real node: pods deleted under the app, and what its
// clients see meanwhile.

func clientset(t *testing.T, node *e2e.Node) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(node.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return p.DeletionTimestamp == nil
		}
	}
	return false
}

// deletePod deletes pod name, as a node drain or an operator would, and
// returns its UID.
func deletePod(t *testing.T, cs *kubernetes.Clientset, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return string(p.UID)
}

// replaced reports whether pod name is a new pod (not uid), Running and
// Ready.
func replaced(cs *kubernetes.Clientset, ns, name, uid string) bool {
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	return err == nil && string(p.UID) != uid && podReady(p)
}

// downLeavesNothing runs kiln down and checks on the node, through the
// CRI, that no pod sandbox or container of namespace ns is left.
func downLeavesNothing(t *testing.T, node *e2e.Node, app, ns string) {
	t.Helper()
	start := time.Now()
	if out, err := kiln(t)("down", "--app", app, "--kubeconfig", node.Kubeconfig, "-n", ns).CombinedOutput(); err != nil {
		t.Fatalf("kiln down: %v\n%s", err, out)
	}
	var left []string
	waitFor(t, 3*time.Minute, "the app's pods gone from containerd", nil, func() bool {
		left = nil
		for _, line := range strings.Split(node.CRI(t, "ps"), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && strings.HasPrefix(f[2], ns+"/") {
				left = append(left, line)
			}
		}
		return len(left) == 0
	})
	t.Logf("kiln down, and the node's containerd holds nothing of %s, in %s", ns, time.Since(start).Round(100*time.Millisecond))
}

// TestKVStoreShardPodComesBackWithItsVolumeAndKeysOnARealNode: kvstore's
// shard pods each get a volume of their own (a local PersistentVolume per
// shard, bound to the claim the StatefulSet names after the shard);
// deleting shard 1's pod brings back a pod of the same name and index on
// the same claim, which answers every key it had, while the other shards
// answer throughout; kiln down leaves no pod on the node.
func TestKVStoreShardPodComesBackWithItsVolumeAndKeysOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	cs := clientset(t, node)
	ctx := context.Background()
	ns := node.Namespace(t, "kiln-node-kvstore")

	// One directory per shard, owned by the pods' user, as a local
	// volume an operator would provide; each PersistentVolume is set
	// aside for its shard's claim.
	dirs := make([]string, 3)
	for i := range dirs {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprintf("shard-%d", i))
		if err := os.Mkdir(dirs[i], 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dirs[i], 65532, 65532); err != nil {
			t.Fatal(err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-shard-%d", ns, i)},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              "standard",
				ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: fmt.Sprintf("data-kvstore-shard-%d", i)},
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: dirs[i], Type: ptr(corev1.HostPathDirectory),
				}},
			},
		}
		if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{}) })
	}
	deployInto(t, node, ns, "./examples/kvstore", "kvstore", 3+2)
	addr := node.PortForward(t, ns, "svc/kvstore", 8080)
	url := "http://" + addr

	for i, dir := range dirs {
		claim, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, fmt.Sprintf("data-kvstore-shard-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%s-shard-%d", ns, i); claim.Spec.VolumeName != want {
			t.Errorf("claim %s is bound to %q, want %s", claim.Name, claim.Spec.VolumeName, want)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "instance")); err != nil || strings.TrimSpace(string(b)) != fmt.Sprintf("kvstore/shard-%d", i) {
			t.Errorf("shard %d's volume has marker %q (%v), want kvstore/shard-%d", i, b, err, i)
		}
	}

	keys, err := testbin.PutKeys(url, 300)
	if err != nil {
		t.Fatal(err)
	}
	byShard := map[string]map[string]string{}
	for key, backend := range keys {
		if byShard[backend] == nil {
			byShard[backend] = map[string]string{}
		}
		byShard[backend][key] = backend
	}
	if len(byShard) != 3 {
		t.Fatalf("keys by shard: %d shards took keys, want 3", len(byShard))
	}

	uid := deletePod(t, cs, ns, "kvstore-shard-1")
	start := time.Now()
	var others []string
	waitFor(t, 3*time.Minute, "kvstore-shard-1 replaced", nil, func() bool {
		// The other shards answer throughout.
		for _, shard := range []string{"shard-0", "shard-2"} {
			others = append(others, testbin.MissingKeys(url, sample(byShard[shard], 10))...)
		}
		return replaced(cs, ns, "kvstore-shard-1", uid)
	})
	t.Logf("kvstore-shard-1 deleted and back in %s", time.Since(start).Round(100*time.Millisecond))
	if len(others) > 0 {
		t.Errorf("while shard 1 was replaced, shards 0 and 2 failed %d reads: %v", len(others), others[:min(len(others), 5)])
	}
	if missing := testbin.MissingKeys(url, byShard["shard-1"]); len(missing) > 0 {
		t.Errorf("the new shard 1 lacks %d of its %d keys: %v", len(missing), len(byShard["shard-1"]), missing[:min(len(missing), 5)])
	}
	claim, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-kvstore-shard-1", metav1.GetOptions{})
	if err != nil || claim.Spec.VolumeName != ns+"-shard-1" {
		t.Errorf("after the replacement, claim data-kvstore-shard-1 is bound to %q (%v), want %s-shard-1", claim.Spec.VolumeName, err, ns)
	}
	downLeavesNothing(t, node, "kvstore", ns)
}

// sample is up to n entries of m.
func sample(m map[string]string, n int) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if len(out) == n {
			break
		}
		out[k] = v
	}
	return out
}

// firstAnswer waits up to 10 s for an app just deployed to answer as it
// should: under enforced policies, a new router's or root's first packets
// to its backends can be refused until the policy plugin knows the pod's
// address, which has taken up to 5 s here. try returns "" for a
// good answer, or what went wrong; the first failure is logged.
func firstAnswer(t *testing.T, what string, try func() string) {
	t.Helper()
	start, first := time.Now(), ""
	waitFor(t, 10*time.Second, what, nil, func() bool {
		failure := try()
		first = cmp.Or(first, failure)
		return failure == ""
	})
	if first != "" {
		t.Logf("%s %s after the deploy; the first failure: %s", what, time.Since(start).Round(time.Millisecond), first)
	}
}

// TestSearchAnswersPartiallyWhileALeafPodIsGoneOnARealNode: with one leaf
// pod deleted, search's answers are partial and name that leaf, and only
// it, until the StatefulSet's replacement is ready; then they are whole.
func TestSearchAnswersPartiallyWhileALeafPodIsGoneOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	cs := clientset(t, node)
	ns := deployOnNode(t, node, "./examples/search", "search", 4+2)
	addr := node.PortForward(t, ns, "svc/search", 8080)
	ask := func() (int, string) {
		resp, _ := fetch(t, "http://"+addr+"/search?q=a")
		return resp.StatusCode, resp.Header.Get("Kiln-Missing")
	}
	firstAnswer(t, "GET /search answered 200 from every leaf", func() string {
		if code, missing := ask(); code != 200 || missing != "" {
			return fmt.Sprintf("%d missing %q", code, missing)
		}
		return ""
	})

	uid := deletePod(t, cs, ns, "search-leaf-2")
	seen := map[string]int{}
	waitFor(t, 3*time.Minute, "search-leaf-2 replaced", nil, func() bool {
		code, missing := ask()
		seen[fmt.Sprintf("%d missing %q", code, missing)]++
		return replaced(cs, ns, "search-leaf-2", uid)
	})
	t.Logf("answers while search-leaf-2 was replaced: %v", seen)
	for answer := range seen {
		if answer != `200 missing ""` && answer != `200 missing "leaf-2"` {
			t.Errorf("while leaf 2 was replaced: %d answers of %s; want 200, whole or missing leaf-2 only", seen[answer], answer)
		}
	}
	if seen[`200 missing "leaf-2"`] == 0 {
		t.Errorf("no partial answer named leaf-2 while it was gone: %v", seen)
	}
	waitFor(t, 30*time.Second, "whole answers again", nil, func() bool {
		code, missing := ask()
		return code == 200 && missing == ""
	})
}

// TestKVLosesNoRequestWhenARouterPodIsDeletedOnARealNode: a load
// generator inside the cluster (a Job running the project's own image,
// calling kv's entry Service by its DNS name) sees every request answered
// 2xx while one of kv's two router pods is deleted; kiln down then leaves
// nothing on the node.
func TestKVLosesNoRequestWhenARouterPodIsDeletedOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	cs := clientset(t, node)
	ctx := context.Background()
	ns := deployOnNode(t, node, "./examples/kv", "kv", 3+2)
	addr := node.PortForward(t, ns, "svc/kv", 8080)
	// As the load generator below does too.
	firstAnswer(t, "PUT /kv/probe answered 204", func() string {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/probe", strings.NewReader("here"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return ""
	})
	image := pushProgram(t, node, "./internal/testbin/loadgen", "loadgen")

	// Labelled as a pod of the app, which kv's policies let in.
	labels := map[string]string{"app.kubernetes.io/instance": "kv", "app.kubernetes.io/name": "load"}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "load", Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name: "load", Image: image,
						Args: []string{"-url", "http://kv:8080/kv/probe", "-rate", "50", "-for", "20s"},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	if _, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var loader string
	waitFor(t, 2*time.Minute, "the load generator running", nil, func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=load"})
		if err != nil || len(pods.Items) == 0 {
			return false
		}
		loader = pods.Items[0].Name
		return pods.Items[0].Status.Phase == corev1.PodRunning
	})
	time.Sleep(5 * time.Second)
	routers, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=router"})
	if err != nil || len(routers.Items) != 2 {
		t.Fatalf("router pods: %v (%v), want 2", routers, err)
	}
	victim := routers.Items[0].Name
	deletePod(t, cs, ns, victim)
	t.Logf("deleted router pod %s 5s after the load generator started", victim)

	var done *batchv1.Job
	waitFor(t, 2*time.Minute, "the load generator done", nil, func() bool {
		done, err = cs.BatchV1().Jobs(ns).Get(ctx, "load", metav1.GetOptions{})
		return err == nil && done.Status.Succeeded+done.Status.Failed > 0
	})
	logs, err := cs.CoreV1().Pods(ns).GetLogs(loader, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var l testbin.Loaded
	if err := json.Unmarshal(logs, &l); err != nil {
		t.Fatalf("the load generator printed %q: %v", logs, err)
	}
	t.Logf("load through a router's deletion: %d answered (%v), %d failed", l.OK, l.Codes, l.Failed)
	if done.Status.Succeeded != 1 || l.Failed > 0 || l.Codes[200] != l.OK || l.OK < 500 {
		t.Errorf("load through a router's deletion: %s; want every request answered 200, at least 500", logs)
	}
	// The load generator is the test's, not the app's: kiln down leaves it.
	if err := cs.BatchV1().Jobs(ns).Delete(ctx, "load", metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "two routers ready again", nil, func() bool {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "kv-router", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2
	})
	downLeavesNothing(t, node, "kv", ns)
}

var compacted = regexp.MustCompile(`msg=compacted token=(\d+)`)

// TestCompactorElectsOneLeaderAtATimeOnARealNode: compactor's three pods
// reach the API server with their own service account and elect through a
// Lease: one at a time logs its passes with its fencing token; deleting
// that pod makes another the leader, with a larger token.
func TestCompactorElectsOneLeaderAtATimeOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	cs := clientset(t, node)
	ctx := context.Background()
	ns := deployOnNode(t, node, "./examples/compactor", "compactor", 3)

	// leaders maps each pod that has compacted to the last token it logged.
	leaders := func() map[string]uint64 {
		out := map[string]uint64{}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			logs, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: "app"}).DoRaw(ctx)
			if err != nil {
				continue // not started yet
			}
			for _, m := range compacted.FindAllStringSubmatch(string(logs), -1) {
				token, _ := strconv.ParseUint(m[1], 10, 64)
				out[p.Name] = token
			}
		}
		return out
	}
	var first map[string]uint64
	waitFor(t, 2*time.Minute, "a leader compacting", nil, func() bool {
		first = leaders()
		return len(first) > 0
	})
	if len(first) != 1 {
		t.Fatalf("pods that compacted: %v, want one leader", first)
	}
	var leader string
	var token uint64
	for leader, token = range first {
	}
	t.Logf("leader %s with token %d", leader, token)

	deletePod(t, cs, ns, leader)
	start := time.Now()
	var next map[string]uint64
	waitFor(t, 2*time.Minute, "a new leader", nil, func() bool {
		next = leaders()
		return len(next) > 0
	})
	t.Logf("new leaders %v, %s after the old one's deletion", next, time.Since(start).Round(100*time.Millisecond))
	if len(next) != 1 {
		t.Errorf("pods that compacted after the leader's deletion: %v, want one", next)
	}
	for pod, tok := range next {
		if pod == leader || tok <= token {
			t.Errorf("new leader %s with token %d; want another pod than %s, with a token above %d", pod, tok, leader, token)
		}
	}
}
