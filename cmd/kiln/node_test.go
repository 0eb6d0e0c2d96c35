package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/e2e"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deployOnNode builds pkg with kiln deploy, pushes it to the node's
// registry and rolls it out in a fresh restricted namespace on the real
// node; it returns the namespace once every pod of the app is Running and
// Ready there.
func deployOnNode(t *testing.T, node *e2e.Node, pkg, app string, pods int) string {
	t.Helper()
	ns := node.Namespace(t, "kiln-node-"+app)
	deployInto(t, node, ns, pkg, app, pods)
	return ns
}

// deployInto is deployOnNode into namespace ns, which node.Namespace made.
func deployInto(t *testing.T, node *e2e.Node, ns, pkg, app string, pods int) {
	t.Helper()
	run := kiln(t)
	start := time.Now()
	out, err := run("deploy", pkg, "--repo", node.Registry+"/"+app, "--kubeconfig", node.Kubeconfig, "-n", ns, "--timeout", "4m").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kiln: "+app+" rolled out in namespace "+ns) {
		t.Fatalf("kiln deploy %s: %v\n%s", pkg, err, out)
	}
	t.Logf("kiln deploy %s (build, push, pull, start) took %s", pkg, time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := run("down", "--app", app, "--kubeconfig", node.Kubeconfig, "-n", ns).CombinedOutput()
			t.Logf("kiln down: %s", b)
		}
	})

	list, err := clientset(t, node).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != pods {
		t.Errorf("pods in %s = %d, want %d", ns, len(list.Items), pods)
	}
	for _, p := range list.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		if p.Spec.NodeName != node.Name || p.Status.Phase != corev1.PodRunning || !ready {
			t.Errorf("pod %s: node %q, phase %s, ready %v; want node %q, Running, ready", p.Name, p.Spec.NodeName, p.Status.Phase, ready, node.Name)
		}
	}
}

// podIPs is the addresses of the pods in ns that selector picks; there
// must be some.
func podIPs(t *testing.T, node *e2e.Node, ns, selector string) []string {
	t.Helper()
	pods, err := clientset(t, node).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods %s in %s: %v (%d)", selector, ns, err, len(pods.Items))
	}
	var ips []string
	for _, p := range pods.Items {
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

func TestHelloRunsOnARealNodeAndAnswersThroughItsService(t *testing.T) {
	node := e2e.RealNode(t)
	ns := deployOnNode(t, node, "./examples/hello", "hello", 3)
	addr := node.PortForward(t, ns, "svc/hello", 8080)

	resp, b := fetch(t, "http://"+addr+"/?name=ada")
	if resp.StatusCode != 200 || !strings.HasPrefix(b, "hello, ada, from replica ") {
		t.Fatalf("GET /?name=ada = %d %q, want 200 \"hello, ada, from replica N\"", resp.StatusCode, b)
	}
}

func TestKVRoutesEachKeyToOneShardOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	ns := deployOnNode(t, node, "./examples/kv", "kv", 3+2)
	addr := node.PortForward(t, ns, "svc/kv", 8080)

	// The router reaches shard i as kv-shard-i.kv-shard: the headless
	// Service's DNS names, answered by CoreDNS. The first query a router
	// sends is lost: its resolver asks again a second later (the pods' DNS
	// options), well within the dial's timeout, so no request fails.
	ips := podIPs(t, node, ns, "app.kubernetes.io/component=router")
	lost := node.LoseFirstDNSQuery(t, ips...)
	do := func(method, key, body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+"/kv/"+key, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s /kv/%s: %v", method, key, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Kiln-Backend"), string(b)
	}
	backend := map[string]string{}
	perShard := map[string]int{}
	for i := range 200 {
		key := fmt.Sprintf("key-%d", i)
		start := time.Now()
		code, be, body := do(http.MethodPut, key, "v"+key)
		if code != http.StatusNoContent || be == "" {
			t.Fatalf("PUT /kv/%s = %d (backend %q) %q after %s, want 204 from a shard", key, code, be, body, time.Since(start).Round(time.Millisecond))
		}
		if i == 0 {
			t.Logf("the first PUT, whose lookup lost a query, took %s", time.Since(start).Round(time.Millisecond))
		}
		backend[key] = be
		perShard[be]++
	}
	for key, be := range backend {
		code, got, body := do(http.MethodGet, key, "")
		if code != http.StatusOK || got != be || body != "v"+key {
			t.Errorf("GET /kv/%s = %d from %q %q, want 200 from %q %q", key, code, got, body, be, "v"+key)
		}
	}
	if len(perShard) != 3 {
		t.Errorf("keys per shard = %v, want some on each of 3 shards", perShard)
	}
	if n := lost(); n == 0 {
		t.Errorf("no DNS query of the routers %v was lost: the test did not test the resolver's retry", ips)
	}
}

// TestASidecarSharesItsPodsVolumeAndNetworkOnARealNode: an init container
// seeds a volume that the sidecar then finds, and the sidecar reaches the
// program on 127.0.0.1 inside the pod and serves its answer on a port of
// its own.
func TestASidecarSharesItsPodsVolumeAndNetworkOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	sidecar := pushProgram(t, node, "./deployer/docker/testdata/sidecar", "sidecar-agent")
	ns := node.Namespace(t, "kiln-node-sidecar")
	out, err := kiln(t)("deploy", "cmd/kiln/testdata/sidecar-node/kiln.hcl", "--var", "sidecar_image="+sidecar,
		"--repo", node.Registry+"/sidecar", "--kubeconfig", node.Kubeconfig, "-n", ns, "--timeout", "4m").CombinedOutput()
	if err != nil {
		t.Fatalf("kiln deploy: %v\n%s", err, out)
	}
	addr := node.PortForward(t, ns, "deploy/hello-replica", 9090)
	var body string
	waitFor(t, 30*time.Second, "the sidecar serving the program's /healthz", nil, func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return strings.Contains(body, "ok")
	})
	logs, err := clientset(t, node).CoreV1().Pods(ns).GetLogs(podOf(t, node, ns, "hello"), &corev1.PodLogOptions{Container: "agent"}).DoRaw(context.Background())
	if err != nil || !strings.Contains(string(logs), `/shared/seed holds "from-init"`) {
		t.Errorf("the sidecar's log %q (%v), want it to find the init container's seed", logs, err)
	}
}

// podOf is the name of a pod of service svc in ns.
func podOf(t *testing.T, node *e2e.Node, ns, svc string) string {
	t.Helper()
	pods, err := clientset(t, node).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + svc})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods of %s: %v", svc, err)
	}
	return pods.Items[0].Name
}

// TestShopRunsOnARealNode: the three services of shop (a simple web, a
// shard of carts, a scatter/gather catalog) run for real and web gathers
// every catalog leaf.
func TestShopRunsOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	ns := deployOnNode(t, node, "./examples/shop", "shop", 2+(3+2)+(4+2))
	addr := node.PortForward(t, ns, "svc/web", 8080)
	resp, b := fetch(t, "http://"+addr+"/find?q=tea")
	var products []struct{ Name string }
	if err := json.Unmarshal([]byte(b), &products); resp.StatusCode != 200 || err != nil || len(products) != 4 {
		t.Errorf("GET /find?q=tea = %d %q (%v), want the 4 teas from every catalog leaf", resp.StatusCode, b, err)
	}
}

// TestSpreadUsesEveryReplicaOnARealNode: spread's routers find the
// replicas through the headless Service and spread requests over them.
func TestSpreadUsesEveryReplicaOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	ns := deployOnNode(t, node, "./examples/spread", "spread", 4+2)
	addr := node.PortForward(t, ns, "svc/spread", 8080)
	seen := map[string]int{}
	for range 80 {
		resp, _ := fetch(t, "http://"+addr+"/")
		if resp.StatusCode != 200 {
			t.Fatalf("GET / = %d", resp.StatusCode)
		}
		seen[resp.Header.Get("Kiln-Backend")]++
	}
	if len(seen) < 3 {
		t.Errorf("80 requests reached %v, want most of the 4 replicas", seen)
	}
}

// TestNotesOfTwoProgramsRunsOnARealNode: an app of two programs, each
// built into its own image and pushed, runs for real; api reaches the
// store's shards through the store's router. Right after a rollout the
// node may still refuse a connection to the store's Service for a moment
// (kube-proxy's rules and the network policies catch up with the new
// pods); api's first connection is refused on purpose, and api dials
// again rather than failing the POST.
func TestNotesOfTwoProgramsRunsOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	ns := deployOnNode(t, node, "./examples/notes", "notes", 2+(2+2))
	addr := node.PortForward(t, ns, "svc/api", 8080)

	store, err := clientset(t, node).CoreV1().Services(ns).Get(context.Background(), "store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	routers := podIPs(t, node, ns, "app.kubernetes.io/name=store,app.kubernetes.io/component=router")
	apis := podIPs(t, node, ns, "app.kubernetes.io/name=api")
	service := fmt.Sprintf("%s:%d", store.Spec.ClusterIP, store.Spec.Ports[0].Port)
	refused := node.RefuseFirstConnection(t, service, routers[0], apis...)

	start := time.Now()
	resp, err := http.Post("http://"+addr+"/notes/shopping", "text/plain", strings.NewReader("eggs"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /notes/shopping = %d %q after %s, want 204 from the store", resp.StatusCode, b, time.Since(start).Round(time.Millisecond))
	}
	if n := refused(); n == 0 {
		t.Errorf("no connection from api to the store was refused, want its first")
	}
	t.Logf("the POST, whose first connection was refused, took %s", time.Since(start).Round(time.Millisecond))
	resp, body := fetch(t, "http://"+addr+"/notes/shopping")
	if resp.StatusCode != 200 || !strings.Contains(body, "eggs") {
		t.Errorf("GET /notes/shopping = %d %q, want the note just posted", resp.StatusCode, body)
	}
}

// TestReportsCronJobRunsOnARealNode: report's CronJob (every minute)
// starts a Job whose pod runs the program's job function to completion
// under the restricted profile.
func TestReportsCronJobRunsOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	cs := clientset(t, node)
	ns := deployOnNode(t, node, "./examples/report", "report", 0)
	var pod corev1.Pod
	waitFor(t, 3*time.Minute, "a run of the cron job succeeded", nil, func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded {
				pod = p
				return true
			}
		}
		return false
	})
	if pod.Spec.NodeName != node.Name {
		t.Errorf("the run's pod %s ran on %q, want %s", pod.Name, pod.Spec.NodeName, node.Name)
	}
	logs, err := cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "app"}).DoRaw(context.Background())
	if err != nil || !strings.Contains(string(logs), `"files":`) {
		t.Errorf("the run's log %q (%v), want its summary line", logs, err)
	}
}

// fetch GETs url and returns the answer with its body, read and closed.
func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the answer: %v", url, err)
	}
	return resp, string(b)
}
