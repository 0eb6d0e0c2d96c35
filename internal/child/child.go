// Package child sets up the processes kiln starts and stops itself
// (topology roles, QEMU), so that none outlives kiln.
package child

import (
	"os/exec"
	"syscall"
	"time"
)

// Own puts cmd in its own process group, which keeps a terminal's Ctrl-C
// away from it (kiln stops its children in order), and where the system
// can, has the kernel kill it if kiln dies unannounced.
func Own(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
}

// OwnGroup is Own for a command run with exec.CommandContext: when the
// context ends, the whole process group is killed, not only its leader,
// since go build's compilers and linker outlive a killed go command.
func OwnGroup(cmd *exec.Cmd) {
	Own(cmd)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}
