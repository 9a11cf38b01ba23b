//go:build linux

package testenv

import (
	"os/exec"
	"syscall"
)

// newMountNS makes cmd start in a mount namespace of its own (the mounts it makes vanish with
// its last process; Go makes / private in it so none propagate to the host's).
func newMountNS(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
	return nil
}
