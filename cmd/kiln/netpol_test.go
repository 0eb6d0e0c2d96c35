package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/internal/testbin"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The labels kiln's workloads carry (deployer/kubernetes).
const (
	labelName      = "app.kubernetes.io/name"
	labelComponent = "app.kubernetes.io/component"
	labelInstance  = "app.kubernetes.io/instance"
)

// A leaf's NetworkPolicy, as kiln renders one, lets only its own router
// in: the router reaches the leaf once the policy is enforced, and a pod
// of another app, labelled as a router of a service of the same name, no
// longer does. Before the policy both do, so the cut is the policy's.
func TestANetworkPolicyLetsOnlyItsRouterReachALeafOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	node.EnforcesPolicies(t)
	ns := node.Namespace(t, "kiln-netpol")
	image := pushProgram(t, node, "./cmd/kiln/testdata/netprobe", "netprobe")
	cs := clientset(t, node)
	ctx := context.Background()

	labels := func(app, component string) map[string]string {
		return map[string]string{labelInstance: app, labelName: "kv", labelComponent: component}
	}
	leaf := probePod("leaf", labels("shop", "leaf"), image, "serve", ":8080")
	leaf.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1,
	}
	// Headless, as kiln's leaves are: the name is the leaf's own address,
	// on the pods' bridge. (A ClusterIP that kube-proxy has not programmed
	// yet would be routed off the machine.)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "leaf"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  leaf.Labels,
			Ports:     []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service leaf: %v", err)
	}
	create := func(p *corev1.Pod) {
		t.Helper()
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", p.Name, err)
		}
	}
	start := time.Now()
	create(leaf)
	// The clients start once the leaf has a name, so that no lookup of
	// theirs is answered (and cached) "no such host".
	waitFor(t, 2*time.Minute, "the leaf to be Ready", func() {}, func() bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "leaf", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	create(probePod("router", labels("shop", "router"), image, "poll", "http://leaf:8080/"))
	create(probePod("outsider", labels("other", "router"), image, "poll", "http://leaf:8080/"))

	logs := func(pod string) []probeLine {
		t.Helper()
		b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).Do(ctx).Raw()
		if err != nil {
			return nil // not started yet
		}
		return parseProbe(t, pod, string(b))
	}
	dump := func() {
		t.Helper()
		for _, p := range []string{"router", "outsider"} {
			b, _ := cs.CoreV1().Pods(ns).GetLogs(p, &corev1.PodLogOptions{TailLines: ptr(int64(40))}).Do(ctx).Raw()
			t.Logf("last lines of %s:\n%s", p, b)
		}
	}

	// Before the policy: both clients reach the leaf through its Service.
	waitFor(t, 2*time.Minute, "both clients to reach the leaf before the policy", dump, func() bool {
		return answered(logs("router")) && answered(logs("outsider"))
	})
	t.Logf("both clients reached the leaf %s after it was created", time.Since(start).Round(100*time.Millisecond))

	// The policy kiln renders for a leaf: in, only its router's pods; out,
	// DNS anywhere and the app's own pods.
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "kv-leaf"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: labels("shop", "leaf")},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: labels("shop", "router")}}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelInstance: "shop"}}}}},
			},
		},
	}
	applied := time.Now()
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating NetworkPolicy kv-leaf: %v", err)
	}

	// After it: the outsider's connections fail from some point on, and
	// every try of the router's from that point on succeeds.
	var cut time.Time
	waitFor(t, time.Minute, "the policy to stop the outsider and not the router", dump, func() bool {
		out := logs("outsider")
		cut = time.Time{}
		for _, l := range out {
			if l.at.After(applied) && l.status != 200 && cut.IsZero() {
				cut = l.at
			}
			if !cut.IsZero() && !blocked(l.text) {
				dump()
				t.Fatalf("outsider's try at %s, after it was first stopped at %s: %s; want a refused or timed-out connection", l.at.Format(time.StampMilli), cut.Format(time.StampMilli), l.text)
			}
		}
		if cut.IsZero() || len(after(out, cut)) < 4 {
			return false
		}
		in := after(logs("router"), cut)
		for _, l := range in {
			if l.status != 200 {
				dump()
				t.Fatalf("router's try at %s, after the policy (created %s) stopped the outsider (%s): %s", l.at.Format(time.StampMilli), applied.Format(time.StampMilli), cut.Format(time.StampMilli), l.text)
			}
		}
		return len(in) >= 4
	})
	t.Logf("the policy stopped the outsider %s after it was created; the router still reaches the leaf",
		cut.Sub(applied).Round(10*time.Millisecond))
	t.Logf("outsider's first try after that: %s", after(logs("outsider"), cut)[0].text)
}

// blocked reports whether a try of netprobe poll failed to connect: a
// policy's REJECT refuses, a DROP times out. A failed lookup is no
// policy's doing.
func blocked(text string) bool {
	return strings.HasPrefix(text, "error ") && !strings.Contains(text, "lookup ") &&
		(strings.Contains(text, "connection refused") || strings.Contains(text, "timeout") || strings.Contains(text, "deadline exceeded"))
}

// probePod runs netprobe with args as a restricted pod.
func probePod(name string, labels map[string]string, image string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name: "netprobe", Image: image, Args: args,
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot:             ptr(true),
					AllowPrivilegeEscalation: ptr(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
}

// pushProgram builds the main package pkg FROM scratch and pushes it to
// the node's registry as repo; it returns the reference by digest.
func pushProgram(t *testing.T, node *e2e.Node, pkg, repo string) string {
	t.Helper()
	root, err := testbin.Root()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := builder.Build(ctx, pkg, builder.Options{Dir: root, Compression: builder.Gzip})
	if err != nil {
		t.Fatalf("building %s: %v", pkg, err)
	}
	pub, err := publish.Publish(ctx, res, publish.Target{Kind: publish.Registry}, publish.Options{Repo: node.Registry + "/" + repo})
	if err != nil {
		t.Fatalf("pushing %s: %v", pkg, err)
	}
	return pub.Ref
}

// probeLine is one try of netprobe poll.
type probeLine struct {
	at     time.Time
	status int // 0 when the try failed before an answer
	text   string
}

func parseProbe(t *testing.T, pod, log string) []probeLine {
	t.Helper()
	var out []probeLine
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if line == "" {
			continue
		}
		ms, rest, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			t.Fatalf("%s printed %q, want \"<unix ms> <status>\" or \"<unix ms> error <why>\"", pod, line)
		}
		status, _ := strconv.Atoi(rest) // 0 for "error ..."
		out = append(out, probeLine{at: time.UnixMilli(n), status: status, text: rest})
	}
	return out
}

// answered reports whether some try got a 200.
func answered(lines []probeLine) bool {
	for _, l := range lines {
		if l.status == 200 {
			return true
		}
	}
	return false
}

// after returns the tries that started at or after at.
func after(lines []probeLine, at time.Time) []probeLine {
	for i, l := range lines {
		if !l.at.Before(at) {
			return lines[i:]
		}
	}
	return nil
}

// waitFor polls ok every half second until it holds, or fails t after
// within, calling dump first.
func waitFor(t *testing.T, within time.Duration, what string, dump func(), ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			if dump != nil {
				dump()
			}
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestKilnsPoliciesKeepOtherPodsFromAShardOnARealNode: with the policies
// kiln renders for kv, a pod of another app cannot reach a shard, even
// labelled as a router of a service named kv, while a pod with kv's
// router's labels does (kv's own routers reach them in every other kv test
// on the node, under the same policies).
func TestKilnsPoliciesKeepOtherPodsFromAShardOnARealNode(t *testing.T) {
	node := e2e.RealNode(t)
	node.EnforcesPolicies(t)
	ns := deployOnNode(t, node, "./examples/kv", "kv", 3+2)
	image := pushProgram(t, node, "./cmd/kiln/testdata/netprobe", "netprobe")
	cs := clientset(t, node)
	ctx := context.Background()
	shard := "http://kv-shard-0.kv-shard:8080/healthz"
	for _, p := range []*corev1.Pod{
		probePod("insider", map[string]string{labelInstance: "kv", labelName: "kv", labelComponent: "router"}, image, "poll", shard),
		probePod("outsider", map[string]string{labelInstance: "other", labelName: "kv", labelComponent: "router"}, image, "poll", shard),
	} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	logs := func(pod string) []probeLine {
		b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).Do(ctx).Raw()
		if err != nil {
			return nil
		}
		return parseProbe(t, pod, string(b))
	}
	waitFor(t, 2*time.Minute, "8 tries of each probe", nil, func() bool {
		return len(logs("insider")) >= 8 && len(logs("outsider")) >= 8
	})
	for _, l := range logs("outsider") {
		if !blocked(l.text) {
			t.Errorf("a pod of another app reached kv's shard 0: %s; want every connection refused or timed out", l.text)
		}
	}
	if in := logs("insider"); !answered(in) || in[len(in)-1].status != 200 {
		t.Errorf("a pod with kv's router's labels got %v from shard 0; want 200", in)
	}
}
