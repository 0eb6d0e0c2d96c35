// Package child sets up the processes kiln starts and stops itself
// (topology roles, QEMU), so that none outlives kiln.
package child

import (
	"os/exec"
	"syscall"
)

// Own puts cmd in its own process group, which keeps a terminal's Ctrl-C
// away from it (kiln stops its children in order), and where the system
// can, has the kernel kill it if kiln dies unannounced.
func Own(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
}
