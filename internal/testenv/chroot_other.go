//go:build !linux

package testenv

import "os/exec"

// newMountNS: RabbitMQ roots run on Linux only.
func newMountNS(*exec.Cmd) error { return errLinuxOnly }
