package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// EnvNode names the run dir of a test cluster that has a real node
// (hack/kube-node): the dir holding its kubeconfig, env and node.env.
const EnvNode = "KILN_TEST_NODE_DIR"

// The real node's taint and label (hack/kube-node): only namespaces made by
// Node.Namespace put pods there.
const (
	nodeLabel = "kiln.dev/node"
	nodeValue = "real"
)

// Node is a test cluster's real node, where pods really run: containerd,
// kubelet, kube-proxy and CoreDNS, pulling images from a registry on
// 127.0.0.1.
type Node struct {
	Config     *rest.Config
	Kubeconfig string // the cluster's kubeconfig file
	Kubectl    string // the kubectl hack/kube-up built
	Name       string // the Node object's name
	Registry   string // host:port of the registry the node pulls from, over plain HTTP
	DNS        string // the address where the node's CoreDNS answers pods
	Nodetool   string // hack/kube/nodetool, built by hack/kube-node
	CRISocket  string // the node's containerd
	// NetworkPolicy names the network plugin that enforces NetworkPolicies
	// on the node (kube-router); "" means none does.
	NetworkPolicy string
}

// RealNode returns the test cluster's real node once it is Ready, or
// skips (fails under CI).
func RealNode(t testing.TB) *Node {
	t.Helper()
	n, err := realNode()
	Require(t, "a Kubernetes test cluster with a real node", err,
		"run hack/test, which starts one with hack/kube-up and hack/kube-node, or export "+EnvNode+"=<run dir> after both")
	return n
}

func realNode() (*Node, error) {
	dir := os.Getenv(EnvNode)
	if dir == "" {
		return nil, errors.New(EnvNode + " is not set")
	}
	env := map[string]string{}
	for _, f := range []string{"env", "node.env"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
	}
	n := &Node{Kubeconfig: env["KUBECONFIG"], Kubectl: env["KUBECTL"], Name: env["NODE_NAME"],
		Registry: env["REGISTRY"], DNS: env["CLUSTER_DNS"], Nodetool: env["NODETOOL"], CRISocket: env["CONTAINERD_SOCK"],
		NetworkPolicy: env["NETWORK_POLICY"]}
	cfg, err := clientcmd.BuildConfigFromFlags("", n.Kubeconfig)
	if err != nil {
		return nil, err
	}
	n.Config = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			return nil, fmt.Errorf("node %s is not Ready: %s", n.Name, c.Message)
		}
	}
	return n, nil
}

// Namespace creates a fresh namespace that enforces the Pod Security
// "restricted" profile and whose pods all run on the real node (through
// the PodNodeSelector and PodTolerationRestriction admission plugins,
// which hack/kube-up enables), and deletes it when the test ends.
func (n *Node) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	return namespace(t, n.Config, prefix, map[string]string{
		"scheduler.alpha.kubernetes.io/node-selector":      nodeLabel + "=" + nodeValue,
		"scheduler.alpha.kubernetes.io/defaultTolerations": `[{"key":"` + nodeLabel + `","operator":"Equal","value":"` + nodeValue + `","effect":"NoSchedule"}]`,
	})
}

// EnforcesPolicies skips t (fails it under CI) unless a network plugin
// enforces NetworkPolicies on the node.
func (n *Node) EnforcesPolicies(t testing.TB) {
	t.Helper()
	var err error
	if n.NetworkPolicy == "" {
		err = errors.New("node.env names no NETWORK_POLICY plugin")
	}
	Require(t, "a network plugin that enforces NetworkPolicies on the real node", err,
		"start the node with hack/kube-node, which runs kube-router's policy controller unless KILN_KUBE_NETPOL=none")
}

// LoseFirstDNSQuery drops, on its way to the node's CoreDNS, the next DNS
// query over UDP from each of the pods at ips, as a congested network or
// a busy DNS server may, until the test ends. It returns how many it has
// dropped so far, so that a test can tell that a lookup met the loss.
// It needs root, as the node does.
func (n *Node) LoseFirstDNSQuery(t testing.TB, ips ...string) (dropped func() int) {
	t.Helper()
	// The mangle table, as hack/kube-node's own rule: kube-router rewrites
	// the filter table.
	return firstPacketRules(t, "mangle", "INPUT", "kiln-e2e-lose-dns", ips, func(ip string) []string {
		return []string{"-s", ip, "-d", n.DNS, "-p", "udp", "--dport", "53", "-j", "DROP"}
	})
}

// RefuseFirstConnection refuses the next TCP connection from each of the
// pods at ips to service (a ClusterIP and port), as the node does for a
// moment after a rollout while kube-proxy's rules and the network
// policies catch up with new pods, until the test ends: the connection is
// sent to port 1 of the pod at podIP, where nothing listens. It returns
// how many it has refused so far. It needs root, as the node does.
func (n *Node) RefuseFirstConnection(t testing.TB, service, podIP string, ips ...string) (refused func() int) {
	t.Helper()
	host, port, ok := strings.Cut(service, ":")
	if !ok {
		t.Fatalf("RefuseFirstConnection: service %q is not IP:PORT", service)
	}
	// The nat table, before kube-proxy's KUBE-SERVICES: it sees only a
	// connection's first packet, so each match is one connection.
	return firstPacketRules(t, "nat", "PREROUTING", "kiln-e2e-refuse", ips, func(ip string) []string {
		return []string{"-s", ip, "-d", host, "-p", "tcp", "--dport", port, "-j", "DNAT", "--to-destination", podIP + ":1"}
	})
}

// firstPacketRules inserts, at the top of chain in table, a rule for each
// source ip that applies rule(ip) to the first packet it sees and to no
// other, deletes them when the test ends, and returns how many packets
// they have matched so far.
func firstPacketRules(t testing.TB, table, chain, comment string, ips []string, rule func(ip string) []string) (matched func() int) {
	t.Helper()
	full := func(ip string) []string {
		// The nth match counts the packets the rule sees.
		r := []string{chain, "-m", "statistic", "--mode", "nth", "--every", "1000000000", "--packet", "0",
			"-m", "comment", "--comment", comment}
		return append(r, rule(ip)...)
	}
	iptables := func(args ...string) (string, error) {
		out, err := exec.Command("iptables", append([]string{"-w", "-t", table}, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, ip := range ips {
		if out, err := iptables(append([]string{"-I"}, full(ip)...)...); err != nil {
			t.Fatalf("iptables: a rule (%s) on %s's first packet: %v\n%s", comment, ip, err, out)
		}
		t.Cleanup(func() { iptables(append([]string{"-D"}, full(ip)...)...) })
	}
	return func() int {
		out, err := iptables("-L", chain, "-v", "-x", "-n")
		if err != nil {
			t.Fatalf("iptables -L: %v\n%s", err, out)
		}
		total := 0
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, comment) {
				var pkts int
				fmt.Sscan(f[0], &pkts)
				total += pkts
			}
		}
		return total
	}
}

var forwarding = regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) ->`)

// PortForward forwards a free port of 127.0.0.1 to port of target (such
// as svc/hello) in namespace ns with kubectl port-forward, until the test
// ends, and returns host:port.
func (n *Node) PortForward(t testing.TB, ns, target string, port int) string {
	t.Helper()
	cmd := exec.Command(n.Kubectl, "--kubeconfig", n.Kubeconfig, "-n", ns,
		"port-forward", "--address", "127.0.0.1", target, fmt.Sprintf(":%d", port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		for sc.Scan() { // keep the pipe drained
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward %s %d: no forwarding within 30s: %s", target, port, stderr.String())
		return ""
	}
}

// CRI runs `nodetool cri ARGS...` against the node's containerd, and
// returns its output.
func (n *Node) CRI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(n.Nodetool, append([]string{"cri", "-socket", n.CRISocket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nodetool cri %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
