//go:build kiln_image && kiln_kube && !kiln_unikernel

package sdk

import (
	"github.com/kiln-dev/kiln/patterns/lease"
	"github.com/kiln-dev/kiln/patterns/lease/kubelease"
)

// clusterLeases: a binary built for images of a service that declares
// leases (build tag kiln_kube, which kiln build and kiln deploy add) takes
// them from the Kubernetes Lease objects kiln renders for its service.
func clusterLeases(service string) (lease.Backend, error) { return kubelease.InCluster(service) }
