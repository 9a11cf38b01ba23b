//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

// The signals the tests send to a node's process group.
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
	sigKill = syscall.SIGKILL
)

// killGroup sends sig to every process of process group pg.
func killGroup(pg int, sig syscall.Signal) error { return syscall.Kill(-pg, sig) }

// runAs makes cmd run as uid:gid (uid < 0: as we do) and, with newGroup, in a process group of
// its own.
func runAs(cmd *exec.Cmd, uid, gid int, newGroup bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: newGroup}
	if uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
}
