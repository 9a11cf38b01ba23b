//go:build linux

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rootBuildTimeout bounds a root build (debootstrap took 40 s to 1.5 min on the development machine)
// and the wait for another process's build.
const rootBuildTimeout = 15 * time.Minute

// EnsureRoot returns the root directory of RabbitMQ version (root, or DefaultRoot(version) when
// root is ""), building it first when it is missing or was left half built: `debootstrap
// --variant=minbase --include=rabbitmq-server SUITE` from the Debian archive of the machine's apt
// sources (debootstrap itself is installed with apt-get when missing), then the few files a node
// needs. The root is built once per machine and kept: a marker written last tells a complete root
// from an interrupted build, and a lock file next to it (ROOT.lock) makes concurrent callers wait
// for one build. Building needs root. debootstrap runs in a mount namespace of its own, so an
// interrupted build leaves no mount behind.
func EnsureRoot(ctx context.Context, version, root string, logw io.Writer) (string, error) {
	if logw == nil {
		logw = io.Discard
	}
	v, err := normVersion(version)
	if err != nil {
		return "", err
	}
	spec, ok := rootSpecs[v]
	if !ok {
		return "", fmt.Errorf("RabbitMQ %s runs from the host's package, not from a root", v)
	}
	if root == "" {
		if root, err = DefaultRoot(v); err != nil {
			return "", err
		}
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", err
	}
	if RootReady(root) {
		return root, ensureHostName(root)
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("the RabbitMQ %s root %s is missing; building it (debootstrap, chroot) needs root", v, root)
	}
	ctx, cancel := context.WithTimeout(ctx, rootBuildTimeout)
	defer cancel()
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, root+".lock", func() {
		fmt.Fprintf(logw, "waiting for another process building %s\n", root)
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if RootReady(root) { // built by the process we waited for
		return root, ensureHostName(root)
	}
	t0 := time.Now()
	if err := buildRoot(ctx, spec, root, logw); err != nil {
		return "", fmt.Errorf("build the RabbitMQ %s root %s: %w", v, root, err)
	}
	fmt.Fprintf(logw, "RabbitMQ %s root %s built in %v\n", v, root, time.Since(t0).Round(time.Second))
	return root, ensureHostName(root)
}

// ensureHostName makes the machine's host name resolve from the root's /etc/hosts. RabbitMQ 4.0
// without a cluster name looks it up on every client connection, and a lookup that goes to DNS
// may hang for seconds (seen here: connects stalled every few dozen). Checked at every use of
// the root, since the root outlives a change of the machine's name.
func ensureHostName(root string) error {
	name, err := os.Hostname()
	if err != nil || name == "" || name == "localhost" {
		return nil
	}
	hosts := filepath.Join(root, "etc", "hosts")
	b, err := os.ReadFile(hosts)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && !strings.HasPrefix(f[0], "#") && slices.Contains(f[1:], name) {
			return nil
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return writeFileAtomic(hosts, append(b, "127.0.0.1\t"+name+"\n"...))
}

// lockFile takes an exclusive flock on path, waiting (until ctx ends) while another process
// holds it; waiting is called once if it has to wait. The lock goes with the process.
func lockFile(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for first := true; ; first = false {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

func buildRoot(ctx context.Context, spec rootSpec, root string, logw io.Writer) error {
	work := root + ".build"
	for _, p := range []string{root, work} {
		if err := removeUnmounted(p); err != nil {
			return err
		}
	}
	if err := ensureDebootstrap(ctx, logw); err != nil {
		return err
	}
	mirror, err := aptMirror()
	if err != nil {
		return err
	}
	// policy-rc.d keeps the package's scripts from starting a broker in the target (it would
	// take the host's 5672 and 4369); debootstrap also fakes start-stop-daemon.
	if err := os.MkdirAll(filepath.Join(work, "usr", "sbin"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "usr", "sbin", "policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	logPath := root + ".build.log"
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logw, "building the RabbitMQ root %s: debootstrap %s from %s (about a minute, once per machine; log in %s)\n",
		root, spec.suite, mirror, logPath)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include=rabbitmq-server", spec.suite, work, mirror)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
	// Its own mount namespace: the /proc and /sys debootstrap mounts in the target vanish with
	// it, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Unshareflags: syscall.CLONE_NEWNS}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, sigKill) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap: %w\n%s", err, tailFile(logPath, 3000))
	}
	pkg, err := finishRoot(work, spec)
	if err != nil {
		return err
	}
	if err := os.Rename(work, root); err != nil {
		return err
	}
	// Written last: the root is complete.
	ready := fmt.Sprintf("rabbitmq-server %s from Debian %s (%s), built %s by amqplb internal/testenv\n",
		pkg, spec.suite, mirror, time.Now().UTC().Format(time.RFC3339))
	return writeFileAtomic(filepath.Join(root, rootReadyFile), []byte(ready))
}

// finishRoot checks what debootstrap installed and adds what a node needs; it returns the
// rabbitmq-server package version.
func finishRoot(root string, spec rootSpec) (string, error) {
	pkg := dpkgVersion(root, "rabbitmq-server")
	if !strings.HasPrefix(pkg, spec.serverVersion) {
		return "", fmt.Errorf("the root has rabbitmq-server %q, want %s*", pkg, spec.serverVersion)
	}
	if _, err := os.Stat(filepath.Join(root, serverPath)); err != nil {
		return "", err
	}
	if _, _, err := rootIDs(root); err != nil {
		return "", err
	}
	// Node names are NAME@localhost: resolve it from the root's own files, never by DNS.
	hosts := filepath.Join(root, "etc", "hosts")
	if b, _ := os.ReadFile(hosts); !bytes.Contains(b, []byte("localhost")) {
		if err := os.WriteFile(hosts, append(b, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"...), 0o644); err != nil {
			return "", err
		}
	}
	// debootstrap creates these (mknod) outside LXC; Erlang needs /dev/null and /dev/urandom.
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(root, "dev", d.name)
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			continue
		}
		_ = os.Remove(p)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return "", fmt.Errorf("create %s: %w", p, err)
		}
		_ = os.Chmod(p, 0o666)
	}
	// Smaller: no downloaded packages or package lists (the root is never upgraded; it is
	// rebuilt when removed).
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/cache/apt/*.bin"} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
	return pkg, nil
}

// dpkgVersion returns the installed version of package name in root, or "".
func dpkgVersion(root, name string) string {
	f, err := os.Open(filepath.Join(root, "var", "lib", "dpkg", "status"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	in := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			in = false
		case strings.HasPrefix(l, "Package: "):
			in = strings.TrimPrefix(l, "Package: ") == name
		case in && strings.HasPrefix(l, "Version: "):
			return strings.TrimPrefix(l, "Version: ")
		}
	}
	return ""
}

// ensureDebootstrap installs debootstrap with apt-get when it is missing.
func ensureDebootstrap(ctx context.Context, logw io.Writer) error {
	if _, err := exec.LookPath("debootstrap"); err == nil {
		return nil
	}
	fmt.Fprintln(logw, "installing debootstrap with apt-get")
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install debootstrap: %w\n%s", err, out)
		}
		return nil
	}
	if install() == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, out)
	}
	return install()
}

// removeUnmounted removes the tree at path, unless something is mounted under it: removing
// through a mount could reach the host's files.
func removeUnmounted(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if m := mountsUnder(path); len(m) > 0 {
		return fmt.Errorf("%s has mounts (%s); unmount them first", path, strings.Join(m, ", "))
	}
	return os.RemoveAll(path)
}

// mountsUnder returns the mount points of this mount namespace at or below path.
func mountsUnder(path string) []string {
	var out []string
	for _, l := range readLines("/proc/self/mountinfo") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == path || strings.HasPrefix(mp, path+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
