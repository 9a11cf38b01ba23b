package e2e

import "syscall"

// Signals as on Linux, so that the package compiles on Windows. Nothing sends them there: the
// tests that do need a RabbitMQ cluster, which runs on Linux only (internal/testenv), and skip
// without one.
const (
	sigStop = syscall.Signal(0x13)
	sigCont = syscall.Signal(0x12)
	sigUSR2 = syscall.Signal(0xc)
)
