package kubernetes

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Network policies: kiln knows who forwards to whom, so each workload's
// pods accept only that traffic. The rules, per workload:
//
//   - a shard, leaf or spread replica accepts its own router or root, or,
//     for a shard whose router is an ambassador, its client's pods;
//   - an entry point (a router, a root, a simple service's replicas)
//     accepts any pod of the app, whose programs may all call each other
//     through discovery, and anyone when the service is public;
//   - a sidecar's declared ports accept any pod of the app;
//   - a job's pods accept nothing;
//   - every pod may reach DNS and the app's pods, a pod that takes leases
//     the API server (on 443 or 6443: a policy cannot name the API
//     server's address, which kiln does not know), the address blocks its
//     service's egress names, and nothing else.
//
// A pod with sidecars keeps the ingress rules but not the egress ones:
// kiln cannot know where a sidecar's image connects. The kubelet's probes
// come from the pod's node, which policies always let through.

// dnsPort is where cluster DNS answers.
const dnsPort = 53

// apiServerPorts are the ports a Kubernetes API server listens on: the
// kubernetes Service's, and the one most API servers bind.
var apiServerPorts = []int32{443, 6443}

// policy renders the NetworkPolicy of s's pods that labels selects,
// accepting from on port (none when 0), or anyone when public.
func (r *renderer) policy(s *spec.Service, name string, labels map[string]string, from []networkingv1.NetworkPolicyPeer, public bool, port int32, leases bool) {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: r.meta(name, labels),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector(labels)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if port != 0 {
		rule := networkingv1.NetworkPolicyIngressRule{Ports: tcpPorts(port)}
		if !public {
			rule.From = from
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rule)
	}
	if ports := sidecarPorts(s); len(ports) > 0 {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.appPods(), Ports: tcpPorts(ports...)})
	}
	if len(s.Sidecars) == 0 {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
		dns := intstr.FromInt32(dnsPort)
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
			{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
			{To: r.appPods()},
		}
		if leases {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{Ports: tcpPorts(apiServerPorts...)})
		}
		if len(s.Egress) > 0 {
			var to []networkingv1.NetworkPolicyPeer
			for _, cidr := range s.Egress {
				to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}})
			}
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to})
		}
	}
	r.add(np)
}

// appPods are the pods of the app, in its namespace.
func (r *renderer) appPods() []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelInstance: r.app.Name}}}}
}

// podsOf are the pods of one workload, as labels selects them.
func podsOf(labels map[string]string) []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: selector(labels)}}}
}

// servicePods are every pod of service name: the ambassador's client,
// whichever its role.
func (r *renderer) servicePods(name string) []networkingv1.NetworkPolicyPeer {
	return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelName: name, LabelInstance: r.app.Name}}}}
}

func tcpPorts(ports ...int32) []networkingv1.NetworkPolicyPort {
	tcp := corev1.ProtocolTCP
	out := make([]networkingv1.NetworkPolicyPort, len(ports))
	for i, p := range ports {
		out[i] = networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr(intstr.FromInt32(p))}
	}
	return out
}

// sidecarPorts are the ports s's sidecars declare, sorted.
func sidecarPorts(s *spec.Service) []int32 {
	var out []int32
	for _, c := range s.Sidecars {
		for _, p := range c.Ports {
			out = append(out, int32(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// workloadPolicy renders the policy of w's pods. front are the labels of
// the router or root that forwards to w, or nil when w is an entry point
// or a job.
func (r *renderer) workloadPolicy(s *spec.Service, w *patterns.Workload, labels map[string]string, front map[string]string) {
	name, port := w.Name(), int32(s.HandlerPort())
	var from []networkingv1.NetworkPolicyPeer
	public := false
	switch {
	case w.Role == patterns.RoleJob:
		name, port = s.Name, 0 // named as its Job or CronJob
	case front == nil:
		from, public = r.appPods(), s.Public
	case s.Shard != nil && s.Shard.Ambassador != "":
		from = r.servicePods(s.Shard.Ambassador)
	default:
		from = podsOf(front)
	}
	r.policy(s, name, labels, from, public, port, len(w.Leases) > 0)
}
