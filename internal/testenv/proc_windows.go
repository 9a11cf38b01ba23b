package testenv

import (
	"errors"
	"os/exec"
	"syscall"
)

// Signals as on Linux; nothing sends them on Windows (see killGroup).
const (
	sigStop = syscall.Signal(0x13)
	sigCont = syscall.Signal(0x12)
	sigKill = syscall.SIGKILL
)

// killGroup cannot signal a process group on Windows: real RabbitMQ test nodes run on Linux.
func killGroup(int, syscall.Signal) error { return errors.ErrUnsupported }

// runAs does nothing on Windows: there are no uids, and no test node runs there.
func runAs(*exec.Cmd, int, int, bool) {}

// processAlive says no on Windows, where no test node runs: every port claim counts as stale.
func processAlive(int) bool { return false }

// lockClaims does nothing on Windows (see processAlive).
func lockClaims() (unlock func()) { return func() {} }
