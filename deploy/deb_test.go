package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// buildDeb runs scripts/deb.sh into a temporary directory and returns the package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	requireTool(t, "dpkg-deb")
	cmd := exec.Command("../scripts/deb.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "VERSION=0~test1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("scripts/deb.sh: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// The package holds the binary, the configuration as a conffile, the hardened service, and the
// manual page. (TestDebInstall also runs lintian, which is slow.)
func TestDebPackage(t *testing.T) {
	deb := buildDeb(t)
	info := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("dpkg-deb", append([]string{args[0], deb}, args[1:]...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	contents := info("--contents")
	for _, f := range []string{"./usr/bin/amqplb", "./etc/amqplb/amqplb.toml", "./lib/systemd/system/amqplb.service",
		"./usr/share/man/man1/amqplb.1.gz", "./usr/share/doc/amqplb/copyright"} {
		if !strings.Contains(contents, " "+f+"\n") {
			t.Errorf("the package has no %s:\n%s", f, contents)
		}
	}
	dir := t.TempDir()
	info("--control", dir)
	conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil || !strings.Contains(string(conffiles), "/etc/amqplb/amqplb.toml\n") {
		t.Errorf("conffiles %q (%v): want /etc/amqplb/amqplb.toml", conffiles, err)
	}
	if v := strings.TrimSpace(info("--field", "Version")); v != "0~test1" {
		t.Errorf("Version %q, want VERSION's 0~test1", v)
	}

	unit, err := os.ReadFile("debian/amqplb.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=amqplb", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=",
		"SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
	} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("amqplb.service has no line %q", line)
		}
	}
	// TimeoutStopSec exceeds the shipped drain_timeout, so that systemd does not cut the drain.
	var cfg amqplbTOML
	if _, err := toml.DecodeFile("debian/amqplb.toml", &cfg); err != nil {
		t.Fatal(err)
	}
	drain, _ := time.ParseDuration(cfg.Global.DrainTimeout)
	var stop int
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, "TimeoutStopSec="); ok {
			fmt.Sscan(v, &stop)
		}
	}
	if time.Duration(stop)*time.Second <= drain {
		t.Errorf("TimeoutStopSec=%d does not exceed drain_timeout %v", stop, drain)
	}
}
