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
