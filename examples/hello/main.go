// Command hello is the simple pattern: three identical replicas behind one
// round-robin entry point. The handler is package examples/annotated/hello's,
// which declares the same service with a //kiln: annotation instead.
package main

import (
	"github.com/kiln-dev/kiln/examples/annotated/hello"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	sdk.Run(spec.Service{
		Name:   "hello",
		Simple: &spec.Simple{Replicas: 3},
	}, hello.New())
}
