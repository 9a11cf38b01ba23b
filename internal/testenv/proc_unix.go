//go:build unix

package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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

// processAlive reports whether a process with this pid exists (EPERM: it does, owned by
// another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// lockClaims takes the lock that serialises port claims between processes (claim), and
// returns its release. Without the lock file, claims go unserialised.
func lockClaims() (unlock func()) {
	f, err := os.OpenFile(filepath.Join(claimDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return func() {}
	}
	return func() { f.Close() } // closing the last descriptor releases the lock
}
