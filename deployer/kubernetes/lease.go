package kubernetes

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/patterns/lease/kubelease"
)

// leases renders what the pods of w, the workload of s that takes its
// leases, need to elect with package kubelease: a Lease object for each
// lease, and a ServiceAccount for those pods alone, bound to a Role that
// may get and update exactly these Leases. pod mounts its token in them.
//
// kiln renders the Lease objects, with an empty spec, rather than let the
// first pod create each: RBAC cannot limit create to some resource names
// (the name is not known when create is authorized), so a Role that
// allowed it would let the pods create any Lease in the namespace. The
// Lease's leaseTransitions also only counts on from an object that exists
// (see kubelease), and server-side apply of labels alone never touches the
// spec the pods write.
func (r *renderer) leases(w *patterns.Workload, labels map[string]string) {
	if len(w.Leases) == 0 {
		return
	}
	names := make([]string, len(w.Leases))
	for i, l := range w.Leases {
		names[i] = kubelease.ObjectName(w.Service, l.Name)
		r.add(&coordinationv1.Lease{
			TypeMeta:   metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
			ObjectMeta: r.meta(names[i], labels),
		})
	}
	r.add(&corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: r.meta(w.Name(), labels),
		// Only the pod templates that opt in mount its token.
		AutomountServiceAccountToken: ptr(false),
	})
	role := w.Name() + "-leases"
	r.add(&rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: r.meta(role, labels),
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{coordinationv1.GroupName},
			Resources:     []string{"leases"},
			ResourceNames: names,
			Verbs:         []string{"get", "update"},
		}},
	})
	r.add(&rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: r.meta(role, labels),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		// No namespace: RBAC takes the RoleBinding's own, which is the
		// ServiceAccount's wherever the objects are applied.
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: w.Name()}},
	})
}
