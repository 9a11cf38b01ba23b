//go:build unix

package e2e

import "syscall"

// The signals the tests send that Windows has no constant for (see signal_windows_test.go).
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
	sigUSR2 = syscall.SIGUSR2
)
