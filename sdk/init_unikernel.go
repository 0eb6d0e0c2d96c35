//go:build kiln_unikernel && linux

package sdk

import (
	"os"

	"github.com/kiln-dev/kiln/unikernel/vminit"
)

// In a microVM image the program is process 1: it sets up the machine and
// runs the program's roles as its children (see package vminit). It never
// returns there; everywhere else this does nothing.
func init() {
	if os.Getpid() == 1 {
		vminit.Main()
	}
}
