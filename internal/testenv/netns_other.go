//go:build !linux

package testenv

import "os/exec"

// startIn starts cmd; network namespaces exist on Linux only.
func startIn(name string, cmd *exec.Cmd) error {
	if name != "" {
		return errLinuxOnly
	}
	return cmd.Start()
}

// InNetNS fails: network namespaces exist on Linux only.
func InNetNS(string, func() error) error { return errLinuxOnly }
