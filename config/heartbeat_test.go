package config

import (
	"strings"
	"testing"
	"time"
)

const heartbeatBase = `
[[frontend]]
name = "amqp"
bind = "127.0.0.1:5672"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"
%s

[[backend.server]]
name = "rmq1"
address = "127.0.0.1:5673"
`

func TestIdleTimeoutHeartbeat(t *testing.T) {
	c, err := Parse("hb.toml", []byte(strings.Replace(heartbeatBase, "%s", `idle_timeout = "heartbeat"
idle_timeout_default = "2h"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Backends[0]
	if b.IdleTimeout != IdleHeartbeat || b.IdleTimeoutDefault != 2*time.Hour {
		t.Fatalf("idle_timeout %v, idle_timeout_default %v; want IdleHeartbeat and 2h", b.IdleTimeout, b.IdleTimeoutDefault)
	}
	out := string(ToTOML(c))
	if !strings.Contains(out, `idle_timeout = "heartbeat"`) || !strings.Contains(out, `idle_timeout_default = "2h"`) {
		t.Fatalf("ToTOML lost the heartbeat idle timeout:\n%s", out)
	}
	again, err := Parse("again.toml", []byte(out))
	if err != nil || again.Backends[0].IdleTimeout != IdleHeartbeat {
		t.Fatalf("round trip: %v, %+v", err, again)
	}
}

func TestIdleTimeoutHeartbeatOnlyWhereAllowed(t *testing.T) {
	for _, line := range []string{`connect_timeout = "heartbeat"`, `idle_timeout = "-1s"`, `idle_timeout_default = "heartbeat"`} {
		_, err := Parse("hb.toml", []byte(strings.Replace(heartbeatBase, "%s", line, 1)))
		if err == nil || !strings.Contains(err.Error(), "hb.toml:") {
			t.Errorf("%s: err = %v, want an error naming the file and line", line, err)
		}
	}
}

func TestFrontendProtocols(t *testing.T) {
	base := strings.Replace(heartbeatBase, `backend = "rabbitmq"`, "backend = \"rabbitmq\"\n%p", 1)
	base = strings.Replace(base, "%s", "", 1)
	c, err := Parse("p.toml", []byte(strings.Replace(base, "%p", `protocols = ["amqp-1.0"]`, 1)))
	if err != nil || len(c.Frontends[0].Protocols) != 1 || c.Frontends[0].Protocols[0] != "amqp-1.0" {
		t.Fatalf("protocols = [\"amqp-1.0\"]: %v, %+v", err, c)
	}
	if !strings.Contains(string(ToTOML(c)), `protocols = ["amqp-1.0"]`) {
		t.Errorf("ToTOML lost protocols:\n%s", ToTOML(c))
	}
	if c, err := Parse("p.toml", []byte(strings.Replace(base, "%p", "", 1))); err != nil || c.Frontends[0].Protocols != nil ||
		strings.Contains(string(ToTOML(c)), "protocols") {
		t.Errorf("default protocols: %v, %+v", err, c.Frontends[0].Protocols)
	}
	for _, bad := range []string{`protocols = ["amqp-0-10"]`, `protocols = ["amqp-1.0", "amqp-1.0"]`,
		"mode = \"tcp\"\nprotocols = [\"amqp-1.0\"]"} {
		if _, err := Parse("p.toml", []byte(strings.Replace(base, "%p", bad, 1))); err == nil || !strings.Contains(err.Error(), "p.toml:") {
			t.Errorf("%s: err = %v, want one naming the file and line", bad, err)
		}
	}
}
