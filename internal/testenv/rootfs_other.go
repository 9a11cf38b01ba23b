//go:build !linux

package testenv

import (
	"context"
	"io"
)

// EnsureRoot needs Linux (debootstrap, chroot, mount namespaces); see rootfs_linux.go.
func EnsureRoot(context.Context, string, string, io.Writer) (string, error) {
	return "", errLinuxOnly
}
