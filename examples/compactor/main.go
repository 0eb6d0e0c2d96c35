// Command compactor is leader election: three replicas serve requests, and
// one of them at a time, the leader, compacts a shared store every few
// seconds, writing with its fencing token. The functions are package
// examples/annotated/compactor's, which declares the same service with
// //kiln: annotations instead.
package main

import (
	"time"

	"github.com/kiln-dev/kiln/examples/annotated/compactor"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	sdk.Run(spec.Service{
		Name:   "compactor",
		Simple: &spec.Simple{Replicas: 3},
		Leases: []spec.Lease{{Name: "compactor", Duration: spec.Duration(5 * time.Second)}},
	}, compactor.New(), sdk.Leader("compactor", compactor.Compact))
}
