//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// stopSignals drain and stop: SIGTERM, SIGINT, and HAProxy's soft-stop signal SIGUSR1.
// reloadSignals reload: SIGHUP, and HAProxy's master-worker reload signal SIGUSR2.
var (
	stopSignals   = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1}
	reloadSignals = []os.Signal{syscall.SIGHUP, syscall.SIGUSR2}
)

// setIDs clears the supplementary groups and switches to gid and, unless it is -1, uid.
func setIDs(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if uid >= 0 {
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("setuid %d: %w", uid, err)
		}
	}
	return nil
}
