package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const valid = `
[[frontend]]
name = "amqp"
bind = "127.0.0.1:5672"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"

[[backend.server]]
name = "rmq1"
address = "127.0.0.1:5673"
`

func TestCommandLine(t *testing.T) {
	good := write(t, "good.toml", valid)
	bad := write(t, "bad.toml", valid+"wieght = 3\n")
	tls := write(t, "tls.toml", strings.Replace(valid, `backend = "rabbitmq"`, "backend = \"rabbitmq\"\ntls = { cert = \"c.pem\", key = \"k.pem\" }", 1))
	hap := write(t, "haproxy.cfg", "defaults\n\tmode tcp\n\ttimeout connect 5s\nlisten rabbitmq\n\tbind 127.0.0.1:5672\n\tbalance leastconn\n\tserver rmq1 127.0.0.1:5673 check inter 2s rise 2 fall 3\n")
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   string // substring expected on stdout
		stderr   string // substring expected on stderr
		noStderr bool
	}{
		{"version", []string{"-version"}, 0, "amqplb ", "", true},
		{"check valid", []string{"-c", "-f", good}, 0, "Configuration file is valid", ": warning: ", false},
		{"check invalid", []string{"-c", "-f", bad}, 1, "", bad + ":13: unknown key backend.server.wieght (did you mean weight?)", false},
		{"check missing certificate", []string{"-c", "-f", tls}, 1, "", "tls.toml:6: frontend amqp: tls: certificate: stat c.pem: no such file", false},
		{"check haproxy.cfg", []string{"-c", "-f", hap}, 0, "Configuration file is valid", "", false},
		{"missing file", []string{"-c", "-f", filepath.Join(t.TempDir(), "nope.toml")}, 1, "", "nope.toml", false},
		{"no file", []string{"-c"}, 2, "", "usage: amqplb", false},
		{"bad flag", []string{"-x"}, 2, "", "flag provided but not defined", false},
		{"convert", []string{"convert", hap}, 0, `balance = "leastconn"`, "", false},
		// Debian's haproxy.service checks before a reload with: -Ws -f $CONFIG -c -q $EXTRAOPTS.
		{"haproxy unit check", []string{"-Ws", "-f", hap, "-c", "-q", "-S", "/run/haproxy-master.sock"}, 0, "", "", true},
		{"haproxy unit check of a bad file", []string{"-Ws", "-f", bad, "-c", "-q"}, 1, "", bad + ":13: unknown key", false},
		{"convert usage", []string{"convert"}, 2, "", "usage: amqplb convert FILE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
			if tc.noStderr && errb.Len() > 0 {
				t.Errorf("unexpected stderr %q", errb.String())
			}
		})
	}
}

// tcp_keepalive = "0s" turns keepalive off: the route's 0 would mean Go's default period.
func TestKeepAliveZeroIsOff(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: -1, 30 * time.Second: 30 * time.Second} {
		if got := keepAlive(in); got != want {
			t.Errorf("keepAlive(%v) = %v, want %v", in, got, want)
		}
	}
}
