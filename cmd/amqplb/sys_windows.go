package main

import (
	"errors"
	"os"
	"syscall"
)

// On Windows, Ctrl-C and SIGTERM stop amqplb; there is no reload signal (use the admin API's
// state changes, or restart).
var (
	stopSignals   = []os.Signal{syscall.SIGTERM, os.Interrupt}
	reloadSignals = []os.Signal{}
)

// setIDs cannot switch users on Windows: global user and group are Unix settings.
func setIDs(uid, gid int) error {
	return errors.New("global user/group: switching users is not supported on Windows")
}
