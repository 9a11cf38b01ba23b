//go:build linux

package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	spec := os.Getenv(keeperEnv)
	if spec == "" {
		return
	}
	if err := runKeeper(spec); err != nil {
		fmt.Fprintf(os.Stderr, "testenv keeper: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runKeeper starts the child and reaps until it has no child left.
func runKeeper(raw string) error {
	var spec keeperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	// Orphans of the node (erl_child_setup, inet_gethost) are reparented to us.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	raiseNoFile()

	if err := writeFileAtomic(spec.SelfOut, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	logf, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = withoutVar(os.Environ(), keeperEnv)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.NewMountNS {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if spec.UID >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID)}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	logf.Close()
	if err := writeFileAtomic(spec.PGIDOut, []byte(strconv.Itoa(cmd.Process.Pid)+"\n")); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.ECHILD):
			return nil
		default:
			return fmt.Errorf("wait: %w", err)
		}
	}
}

// raiseNoFile lifts RLIMIT_NOFILE as far as allowed. Setting it explicitly also
// stops the Go runtime from restoring the original soft limit in children, so
// the broker inherits it (Debian's wrapper goes through su, whose PAM limit of
// 1024 caps a node at 832 sockets).
func raiseNoFile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := uint64(65536)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil && lim.Max <= want {
		return
	}
	if lim.Cur < lim.Max {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
}

// spawnKept starts a keeper for spec in a session of its own and waits until it
// reports the child's pid. The returned keeper process is our child: the caller
// may Wait for it once the child is gone, or leave it (it outlives us).
func spawnKept(spec keeperSpec, env []string, keeperLog string) (pgid int, keeper *os.Process, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, fmt.Errorf("find own executable: %w", err)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return 0, nil, err
	}
	_ = os.Remove(spec.PGIDOut)
	_ = os.Remove(spec.SelfOut)
	klog, err := os.OpenFile(keeperLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, nil, err
	}
	defer klog.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(withoutVar(env, keeperEnv), keeperEnv+"="+string(raw))
	cmd.Stdout, cmd.Stderr = klog, klog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startIn(spec.NetNS, cmd); err != nil {
		return 0, nil, fmt.Errorf("start keeper for %s: %w", spec.Argv[0], err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pid, err := readPIDFile(spec.PGIDOut); err == nil {
			return pid, cmd.Process, nil
		}
		var ws unix.WaitStatus
		if wpid, _ := unix.Wait4(cmd.Process.Pid, &ws, unix.WNOHANG, nil); wpid == cmd.Process.Pid {
			return 0, nil, fmt.Errorf("keeper for %s exited (%v); see %s", spec.Argv[0], ws.ExitStatus(), keeperLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
	return 0, nil, fmt.Errorf("keeper for %s did not report its child within 10s; see %s", spec.Argv[0], keeperLog)
}

// waitKeeperGone waits (bounded) until the keeper whose pid is in file has
// exited, that is until it has reaped its child and every orphan of it, and
// reaps it when it is ours.
func waitKeeperGone(file string, ours *os.Process, bound time.Duration) error {
	if pid, err := readPIDFile(file); err == nil {
		deadline := time.Now().Add(bound)
		for st := procState(pid); st != 0 && st != 'Z' && st != 'X'; st = procState(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("keeper %d still running after %v (see its node's processes)", pid, bound)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ours != nil {
		_, _ = ours.Wait()
	}
	return nil
}

// groupAlive reports whether process group pgid still has a member that has not
// finished exiting. A zombie whose other threads still run counts as alive: a
// killed multithreaded beam.smp shows its leader thread as a zombie before the
// last thread has closed the process's sockets.
func groupAlive(pgid int) bool {
	if pgid <= 0 || syscall.Kill(-pgid, 0) != nil {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pg := procStat(pid); pg == pgid && st != 0 && st != 'X' && (st != 'Z' || threads(pid) > 1) {
			return true
		}
	}
	return false
}

// threads returns the number of threads of pid still listed in /proc.
func threads(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// procState returns the state letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...)
// or 0 when the process does not exist.
func procState(pid int) byte {
	st, _ := procStat(pid)
	return st
}

// procStat returns the state letter and process group of pid (0, 0 when it does
// not exist).
func procStat(pid int) (state byte, pgrp int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// "pid (comm) S ppid pgrp ..."; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0
	}
	pgrp, _ = strconv.Atoi(f[2])
	return f[0][0], pgrp
}
