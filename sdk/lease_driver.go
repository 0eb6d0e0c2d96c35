//go:build !(kiln_image && kiln_kube) || kiln_unikernel

package sdk

import (
	"errors"

	"github.com/kiln-dev/kiln/patterns/lease"
)

// clusterLeases: a binary built to be run by developers takes its leases
// from the local driver, which sets KILN_LEASE_URL; a unikernel has no
// lease back-end (the vm target refuses leases); and an image has the
// Kubernetes one only when built with tag kiln_kube.
func clusterLeases(string) (lease.Backend, error) {
	return nil, errors.New(lease.EnvURL + " is unset (the local driver sets it for the processes it starts), and this binary has no Kubernetes lease back-end: kiln build and kiln deploy build images of services that declare leases with tag kiln_kube")
}
