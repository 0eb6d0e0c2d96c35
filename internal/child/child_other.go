//go:build unix && !linux

package child

import "syscall"

// dieWithParent has no equivalent here: a child of a kiln that was
// SIGKILLed lives on.
func dieWithParent(*syscall.SysProcAttr) {}
