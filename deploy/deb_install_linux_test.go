//go:build linux

package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// TestDebInstall is in a file of its own because it needs Linux: dpkg, systemd's contract, and
// syscall.Credential to run amqplb as its service user. TestDebPackage (deb_test.go) builds the
// package anywhere dpkg-deb is installed.

// checkLintian fails t on any lintian error or warning about deb. What it may still say: the
// override for the static Go binary, and the note that there is no init.d script (systemd only).
func checkLintian(t *testing.T, deb string) {
	t.Helper()
	lintian := requireTool(t, "lintian")
	out, err := exec.Command(lintian, "--fail-on", "error,warning", deb).CombinedOutput()
	var findings []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "W:") {
			findings = append(findings, l)
		}
	}
	if err != nil || len(findings) > 0 {
		t.Errorf("lintian: %v\n%s", err, out)
	}
}

// TestDebInstall runs lintian on the package, installs it with dpkg -i, checks the result and the
// service's contract (sd_notify READY, reload on SIGHUP, STOPPING on SIGTERM) as the service's
// user, then purges it. It changes the machine, so it runs only with AMQPLB_DEB_TEST=1
// (make deb-test), as root.
func TestDebInstall(t *testing.T) {
	if os.Getenv("AMQPLB_DEB_TEST") != "1" {
		t.Skip("AMQPLB_DEB_TEST=1 installs the package on this machine (make deb-test)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("dpkg -i needs root")
	}
	if exec.Command("dpkg-query", "-W", "-f=${Status}", "amqplb").Run() == nil {
		t.Fatal("a package amqplb is already installed here: the test will not replace it")
	}
	_, userErr := exec.Command("getent", "passwd", "amqplb").Output()
	userExisted := userErr == nil
	deb := buildDeb(t)
	checkLintian(t, deb)

	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if exec.Command("dpkg-query", "-W", "amqplb").Run() == nil {
			if out, err := exec.Command("dpkg", "--purge", "amqplb").CombinedOutput(); err != nil {
				t.Errorf("dpkg --purge amqplb: %v\n%s", err, out)
			}
		}
		// postrm keeps the system user, as Debian packages do; the test removes what it made.
		if !userExisted {
			exec.Command("deluser", "--system", "amqplb").Run()
		}
	})
	run("dpkg", "-i", deb)

	// The shipped configuration runs as it is.
	run("/usr/bin/amqplb", "-c", "-f", "/etc/amqplb/amqplb.toml")
	if c := run("dpkg-query", "-W", "-f=${Conffiles}", "amqplb"); !strings.Contains(c, "/etc/amqplb/amqplb.toml ") {
		t.Errorf("installed conffiles %q: want /etc/amqplb/amqplb.toml", c)
	}
	pw := strings.Split(strings.TrimSpace(run("getent", "passwd", "amqplb")), ":")
	if len(pw) != 7 || pw[2] == "0" || !strings.HasSuffix(pw[6], "nologin") {
		t.Errorf("user amqplb is %v: want a system user without login", pw)
	}
	st, err := os.Stat("/etc/amqplb/amqplb.toml")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("/etc/amqplb/amqplb.toml has mode %v, want 0640 (it may hold passwords)", st.Mode().Perm())
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		run(analyze, "verify", "/lib/systemd/system/amqplb.service")
	}

	// The service's contract, as systemd would run it: as user amqplb, NOTIFY_SOCKET set.
	// (The shipped file with free loopback ports, so that nothing else on the machine is hit.)
	shipped, err := os.ReadFile("/etc/amqplb/amqplb.toml")
	if err != nil {
		t.Fatal(err)
	}
	admin := testenv.FreeAddr(t)
	text := strings.Replace(string(shipped), `bind    = "0.0.0.0:5672"`, fmt.Sprintf("bind    = %q", testenv.FreeAddr(t)), 1)
	text = strings.Replace(text, `listen = "127.0.0.1:8404"`, fmt.Sprintf("listen = %q", admin), 1)
	if text == string(shipped) {
		t.Fatal("the shipped configuration's bind and listen lines changed: update this test")
	}
	cfgPath := "/etc/amqplb/test-notify.toml" // readable by amqplb only through the directory's group
	if err := os.WriteFile(cfgPath, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	run("chown", "root:amqplb", cfgPath)

	sockDir, err := os.MkdirTemp("", "amqplb-notify") // t.TempDir's parent is 0700: amqplb could not reach it
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	os.Chmod(sockDir, 0o755)
	sockPath := filepath.Join(sockDir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	os.Chmod(sockPath, 0o666)
	next := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			n, err := sock.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", want, err)
			}
			if strings.Contains(string(buf[:n]), want) {
				return
			}
		}
	}
	u, err := user.Lookup("amqplb")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cmd := exec.Command("/usr/bin/amqplb", "-f", cfgPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("amqplb's log:\n%s", log.String())
		}
	}()
	next("READY=1")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("amqplb after SIGTERM: %v", err)
		}
		if !strings.Contains(log.String(), "reloaded") {
			t.Errorf("no reload logged after SIGHUP:\n%s", log.String())
		}
	case <-time.After(15 * time.Second):
		t.Error("amqplb did not exit within 15 s of SIGTERM")
	}
	os.Remove(cfgPath)

	run("dpkg", "--purge", "amqplb")
	for _, gone := range []string{"/usr/bin/amqplb", "/etc/amqplb", "/lib/systemd/system/amqplb.service",
		"/etc/systemd/system/multi-user.target.wants/amqplb.service"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is still there after dpkg --purge", gone)
		}
	}
}
