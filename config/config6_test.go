package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseNewKeysErrors checks the validation of the keys of the
// haproxy.cfg drop-in (TLS, ACLs, tcp-check, stats, syslog), each message
// on its key's line.
func TestParseNewKeysErrors(t *testing.T) {
	src := `
[global]
log = [
  { address = "syslog", facility = "local9" },
  { address = "127.0.0.1:514", level = "verbose" },
  { facility = "local0" },
]

[[stats]]
name = "s"
bind = ":5672"
uri = "stats"
auth = ["admin", ":x"]
refresh = "-1s"

[[stats]]
name = "s"
uri = ""

[[frontend]]
name = "a"
bind = ":5672"
backend = "b"
tls = { cert = "c.pem", verify = "required" }
acl = { lan = ["10.0.0.0/8", "ten"], "bad name" = ["::1"] }
tcp_request = [
  { action = "drop" },
  { action = "reject", if = "lan", unless = "lan" },
  { action = "reject", if = "lan ||" },
  { action = "reject", unless = "lan !wan" },
  { if = "lan" },
]

[[frontend]]
name = "c"
bind = ":5673"
backend = "b"
tls = { cert = "c.pem", verify = "maybe" }

[[backend]]
name = "b"
on_marked_up = "shutdown-sessions"
half_close_timeout = "-1s"

[backend.health_check]
type = "amqp-probe"
tcp_check = [{ action = "send", data = "x" }]

[[backend.server]]
name = "s1"
address = "h1:5672"
check_port = 70000
tls = { verify = "optional", key = "k.pem" }

[[backend.server]]
name = "s2"
address = "h2:5672"

[[backend]]
name = "t"

[backend.health_check]
type = "tcp"
tcp_check = [
  { action = "send" },
  { action = "connect" },
  { action = "send-binary", data = "41x" },
  { action = "expect", match = "regex", pattern = "x" },
  { action = "expect", match = "rstring", pattern = "(" },
  { action = "expect", match = "binary", pattern = "4" },
  { action = "expect", match = "string" },
  { action = "send", data = "x", pattern = "y" },
  { action = "wait" },
  {},
]

[[backend.server]]
name = "s1"
address = "h1:5672"

[[backend.server]]
name = "s2"
address = "h2:5672"
`
	want := `a.toml:4: global: log #1: address "syslog" is not host:port (e.g. "10.0.0.5:5672")
a.toml:4: global: log #1: facility "local9" is not one of "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2", "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"
a.toml:5: global: log #2: level "verbose" is not one of "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
a.toml:6: global: log #3: address is required (host:port of a syslog server, UDP, or the path of a local syslog socket)
a.toml:11: stats "s": bind :5672 is already used by frontend "a"
a.toml:12: stats "s": uri "stats" must start with /
a.toml:13: stats "s": auth "admin" is not user:password
a.toml:13: stats "s": auth ":x" is not user:password
a.toml:14: stats "s": refresh -1s must not be negative
a.toml:16: stats "s": bind is required
a.toml:16: stats "s": serves nothing: set uri (the status page) or metrics (Prometheus), or both
a.toml:17: duplicate stats "s" (first defined at line 10)
a.toml:24: frontend "a": tls: verify "required" needs ca, the CA bundle that client certificates are checked against
a.toml:25: frontend "a": acl "bad name": a name has only letters, digits and _ . : -
a.toml:25: frontend "a": acl "lan": "ten" is not an IP address or CIDR prefix
a.toml:27: frontend "a": tcp_request #1: action "drop" is not one of "accept", "reject"
a.toml:28: frontend "a": tcp_request #2: set if or unless, not both
a.toml:29: frontend "a": tcp_request #3: if "lan ||": condition ends with "||"
a.toml:30: frontend "a": tcp_request #4: unless: acl "wan" is not defined (define it in acl)
a.toml:31: frontend "a": tcp_request #5: action is required (accept or reject)
a.toml:38: frontend "c": tls: verify "maybe" is not one of "none", "optional", "required"
a.toml:42: backend "b": on_marked_up "shutdown-sessions" is not one of "keep", "shutdown-backup-sessions"
a.toml:43: backend "b": half_close_timeout -1s must not be negative
a.toml:47: backend "b": health_check: tcp_check needs type = "tcp", not "amqp-probe"
a.toml:52: backend "b": server "s1": check_port 70000 out of range 0..65535
a.toml:53: backend "b": server "s1": tls: verify "optional" is not one of "none", "chain", "required"
a.toml:53: backend "b": server "s1": tls: key needs cert (the client certificate)
a.toml:65: backend "t": health_check: tcp_check #1: send needs data
a.toml:66: backend "t": health_check: tcp_check #2: connect can only be the first step (the check connects once)
a.toml:67: backend "t": health_check: tcp_check #3: send-binary data "41x" is not hex bytes (e.g. "414d5150")
a.toml:68: backend "t": health_check: tcp_check #4: match "regex" is not one of "string", "binary", "rstring", "rbinary"
a.toml:69: backend "t": health_check: tcp_check #5: pattern "(": error parsing regexp: missing closing ): ` + "`(`" + `
a.toml:70: backend "t": health_check: tcp_check #6: binary pattern "4" is not hex bytes
a.toml:71: backend "t": health_check: tcp_check #7: expect needs pattern
a.toml:72: backend "t": health_check: tcp_check #8: pattern has no meaning with action "send"
a.toml:73: backend "t": health_check: tcp_check #9: action "wait" is not one of "connect", "send", "send-binary", "expect"
a.toml:74: backend "t": health_check: tcp_check #10: action is required (connect, send, send-binary or expect)`
	c, err := Parse("a.toml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", c)
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not an ErrorList", err)
	}
	if got := err.Error(); got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseNewKeysWarnings(t *testing.T) {
	src := strings.Replace(minimal, `backend = "rabbitmq"`, `backend = "rabbitmq"
tls = { cert = "c.pem", ca = "ca.pem" }
acl = { lan = ["10.0.0.0/8"], unused = ["::1"] }
tcp_request = [{ action = "reject", unless = "lan" }]`, 1)
	c, err := Parse("w.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`w.toml:6: frontend "amqp": tls: ca has no effect with verify = "none" (no client certificate is asked for)`,
		`w.toml:7: frontend "amqp": acl "unused" is not used by any tcp_request rule`,
	}
	if !reflect.DeepEqual(c.Warnings, want) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(want, "\n"))
	}
	f := c.Frontends[0]
	if f.TLS == nil || *f.TLS != (TLS{Cert: "c.pem", CA: "ca.pem", Verify: "none"}) {
		t.Errorf("tls = %+v, want the defaults filled in", f.TLS)
	}
}

// TestParseEmptyLists checks that an empty list or table reads as an absent
// one, so that ToTOML, which leaves them out, round-trips.
func TestParseEmptyLists(t *testing.T) {
	src := strings.Replace(minimal, `backend = "rabbitmq"`, `backend = "rabbitmq"
acl = {}
tcp_request = []`, 1)
	src = strings.Replace(src, "[[backend]]\nname = \"rabbitmq\"", "[global]\nlog = []\n\n[[backend]]\nname = \"rabbitmq\"", 1)
	c, err := Parse("e.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultsWant("e.toml")
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", c, want)
	}
}
