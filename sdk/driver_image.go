//go:build kiln_image

package sdk

import (
	"context"
	"errors"
	"io"

	"github.com/kiln-dev/kiln/spec"
)

// drive refuses: binaries built for images carry no deployer, so they only
// serve the role a deployer gives them.
func drive(context.Context, *spec.App, []string, io.Writer) error {
	return usageError{errors.New("this binary serves roles only: a deployer starts it with KILN_ROLE set (run the program with `go run` or `kiln run` to start its whole topology)")}
}
