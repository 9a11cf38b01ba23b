//go:build linux

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// startIn starts cmd inside the network namespace /run/netns/NAME (`ip netns add NAME`), or
// in ours when name is "". The child is forked by a thread that entered the namespace, so the
// child and everything it starts live there; the thread goes back before it runs anything else.
func startIn(name string, cmd *exec.Cmd) error {
	if name == "" {
		return cmd.Start()
	}
	return InNetNS(name, cmd.Start)
}

// InNetNS runs f on a thread that has entered the network namespace /run/netns/NAME: the
// sockets f opens and the processes it starts belong to that namespace. f must not start
// goroutines that use the network (they run on other threads).
func InNetNS(name string, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the namespace: it stays locked, so it ends with this goroutine
		// instead of serving others.
		return fmt.Errorf("back from network namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
