// Command spread is the spread pattern: four replicas, and each request goes
// to the less loaded of two replicas picked at random. The handler is
// package examples/annotated/spread's.
package main

import (
	"github.com/kiln-dev/kiln/examples/annotated/spread"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	sdk.Run(spec.Service{
		Name:   "spread",
		Spread: &spec.Spread{Replicas: 4, Choice: spec.ChoiceTwoChoices},
	}, spread.New())
}
