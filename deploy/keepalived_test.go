package deploy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// requireTool returns the path of a program installed by scripts/install-test-deps.sh. Where it
// is missing the test skips, or fails when AMQPLB_REQUIRE_BROKERS=1 (CI, after make deps).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (make deps installs it)", name)
		if os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// keepalived -t accepts the example: every keyword known, the check script found and tracked.
func TestKeepalivedConfig(t *testing.T) {
	keepalived := requireTool(t, "keepalived")
	b, err := os.ReadFile("keepalived/keepalived.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	const installed = `script "/etc/keepalived/check_amqplb.sh"`
	for _, want := range []string{installed, "track_script {\n        check_amqplb", "enable_script_security", "script_user nobody nogroup"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("keepalived.conf has no %q", want)
		}
	}
	script, err := filepath.Abs("keepalived/check_amqplb.sh")
	if err != nil {
		t.Fatal(err)
	}
	// The script where this checkout has it. And script_user root: keepalived 2.2.7's -t kills
	// itself with SIGTERM (exit 143) whenever the script user is not root, valid file or not.
	testConf := strings.Replace(conf, installed, `script "`+script+`"`, 1)
	testConf = strings.Replace(testConf, "script_user nobody nogroup", "script_user root", 1)
	run := func(text string) (string, error) {
		path := filepath.Join(t.TempDir(), "keepalived.conf")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(keepalived, "-t", "-l", "-f", path).CombinedOutput()
		return string(out), err
	}
	if out, err := run(testConf); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("keepalived -t: %v\n%s", err, out)
	}
	// -t does reject what is wrong.
	if out, err := run(strings.Replace(testConf, "advert_int 1", "advert_intervall 1", 1)); err == nil {
		t.Errorf("keepalived -t accepted an unknown keyword:\n%s", out)
	}
}

// check_amqplb.sh passes while amqplb's /readyz answers 200, and fails when it answers 503 (no
// server up) or nothing answers.
func TestKeepalivedCheckScript(t *testing.T) {
	requireTool(t, "curl")
	check := func(adminAddr string) error {
		cmd := exec.Command("keepalived/check_amqplb.sh")
		cmd.Env = append(os.Environ(), "AMQPLB_READYZ_URL=http://"+adminAddr+"/readyz")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	config := func(server, checkType string) (string, string) {
		admin := testenv.FreeAddr(t)
		return fmt.Sprintf(`
[admin]
listen = %q
[[frontend]]
name = "amqp"
bind = %q
backend = "rabbitmq"
[[backend]]
name = "rabbitmq"
[backend.health_check]
type = %q
interval = "100ms"
rise = 1
fall = 1
[[backend.server]]
name = "rmq1"
address = %q
`, admin, testenv.FreeAddr(t), checkType, server), admin
	}

	ready, readyAdmin := config(fakeServer(t), "tcp")
	startAmqplb(t, ready, readyAdmin)
	testenv.Eventually(t, 10*time.Second, func() error { return check(readyAdmin) })

	down, downAdmin := config(testenv.FreeAddr(t), "tcp") // nothing listens there
	startAmqplb(t, down, downAdmin)
	testenv.Eventually(t, 10*time.Second, func() error {
		if check(downAdmin) == nil {
			return errors.New("check_amqplb.sh passes while amqplb's only server is down")
		}
		return nil
	})
	if err := check(testenv.FreeAddr(t)); err == nil {
		t.Error("check_amqplb.sh passed with no amqplb answering")
	}
}
