package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file: one frontend, one backend, two servers.
const minimal = `
[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"

[[backend.server]]
name = "rmq1"
address = "10.0.0.1:5672"

[[backend.server]]
name = "rmq2"
address = "10.0.0.2:5672"
`

// full sets every key to a value other than its default.
const full = `
[global]
max_connections = 500
drain_timeout = "1m"
log_level = "debug"
log_format = "json"
access_log = false
log = [{ address = "127.0.0.1:514", facility = "local3", level = "info" }, { address = "[::1]:5514" }]

[admin]
listen = "0.0.0.0:9000"
token = "t0k"
vhost_labels = 5

[[stats]]
name = "stats"
bind = "127.0.0.1:1936"
uri = "/haproxy?stats"
auth = ["admin:secret", "ops:x:y"]
realm = "RabbitMQ"
refresh = "5s"
hide_version = true
metrics = "/metrics"

[[frontend]]
name = "amqps"
bind = "0.0.0.0:5671"
backend = "rabbitmq"
mode = "tcp"
max_connections = 100
tls = { cert = "server.pem", key = "server.key", ca = "ca.pem", verify = "optional" }
accept_proxy = true
dont_log_null = true
acl = { lan = ["10.0.0.0/8", "::1"], "ops.team" = ["192.168.1.7"] }
tcp_request = [
  { action = "accept", if = "ops.team" },
  { action = "reject", unless = "lan", layer = "content" },
]

[[backend]]
name = "rabbitmq"
balance = "leastconn"
connect_timeout = "2s"
retries = 5
redispatch = false
idle_timeout = "10m"
tcp_keepalive = "15s"
send_proxy = "v2"
on_marked_down = "shutdown-sessions"
on_marked_up = "shutdown-backup-sessions"
half_close_timeout = "10s"
slowstart = "30s"

[backend.health_check]
type = "tcp"
interval = "3s"
fast_interval = "250ms"
down_interval = "5s"
timeout = "1500ms"
rise = 1
fall = 2
vhost = "prod"
username = "monitor"
password_env = "AMQPLB_TEST_PASSWORD"
management = { port = 15671, alarms = true, eject_on_alarm = true }
tcp_check = [
  { action = "connect" },
  { action = "send", data = "PING\r\n\u0000" },
  { action = "send-binary", data = "414d5150" },
  { action = "expect", match = "rstring", pattern = "^\\+PONG", negate = true },
]

[[backend.server]]
name = "rmq1"
address = "rmq1.example.com:5671"
weight = 10
max_connections = 1000
check_port = 5672
tls = { verify = "none", ca = "ca.pem", server_name = "rabbit", cert = "client.pem", key = "client.key" }
check_tls = true
check_send_proxy = true

[[backend.server]]
name = "rmq2"
address = "[fd00::2]:5672"
weight = 0
backup = true
`

func TestParseFull(t *testing.T) {
	t.Setenv("AMQPLB_TEST_PASSWORD", "s3cret")
	got, err := Parse("full.toml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File: "full.toml",
		Global: Global{MaxConnections: 500, DrainTimeout: time.Minute, LogLevel: "debug", LogFormat: "json", AccessLog: false,
			Log: []LogTarget{{Address: "127.0.0.1:514", Facility: "local3", Level: "info"}, {Address: "[::1]:5514", Facility: "local0", Level: "debug"}}},
		Admin: Admin{Listen: "0.0.0.0:9000", Token: "t0k", VHostLabels: 5, SocketLevel: "operator"},
		Stats: []Stats{{Name: "stats", Bind: "127.0.0.1:1936", URI: "/haproxy?stats", Auth: []string{"admin:secret", "ops:x:y"},
			Realm: "RabbitMQ", Refresh: 5 * time.Second, HideVersion: true, Metrics: "/metrics"}},
		Frontends: []Frontend{{
			Name: "amqps", Bind: "0.0.0.0:5671", Backend: "rabbitmq", Mode: "tcp", MaxConnections: 100,
			TLS: &TLS{Cert: "server.pem", Key: "server.key", CA: "ca.pem", Verify: "optional"}, AcceptProxy: true,
			DontLogNull: true, ACL: map[string][]string{"lan": {"10.0.0.0/8", "::1"}, "ops.team": {"192.168.1.7"}},
			TCPRequest: []TCPRule{{Layer: "connection", Action: "accept", If: "ops.team"}, {Layer: "content", Action: "reject", Unless: "lan"}},
		}},
		Backends: []Backend{{
			Name: "rabbitmq", Balance: "leastconn", ConnectTimeout: 2 * time.Second, Retries: 5, Redispatch: false,
			IdleTimeout: 10 * time.Minute, TCPKeepalive: 15 * time.Second, SendProxy: "v2",
			OnMarkedDown: "shutdown-sessions", OnMarkedUp: "shutdown-backup-sessions", HalfCloseTimeout: 10 * time.Second,
			Slowstart: 30 * time.Second,
			HealthCheck: HealthCheck{
				Type: "tcp", Interval: 3 * time.Second, FastInterval: 250 * time.Millisecond,
				DownInterval: 5 * time.Second, Timeout: 1500 * time.Millisecond, Rise: 1, Fall: 2,
				VHost: "prod", Username: "monitor", Password: "s3cret", PasswordEnv: "AMQPLB_TEST_PASSWORD",
				Management: &Management{Port: 15671, Alarms: true, EjectOnAlarm: true},
				TCPCheck: []TCPCheckStep{
					{Action: "connect"}, {Action: "send", Data: "PING\r\n\x00"}, {Action: "send-binary", Data: "414d5150"},
					{Action: "expect", Match: "rstring", Pattern: `^\+PONG`, Negate: true},
				},
			},
			Servers: []Server{
				{Name: "rmq1", Address: "rmq1.example.com:5671", Weight: 10, MaxConnections: 1000, CheckPort: 5672,
					TLS:      &ServerTLS{Verify: "none", CA: "ca.pem", ServerName: "rabbit", Cert: "client.pem", Key: "client.key"},
					CheckTLS: true, CheckSendProxy: true},
				// Not written: checks send the PROXY header as the traffic does.
				{Name: "rmq2", Address: "[fd00::2]:5672", Weight: 0, Backup: true, CheckSendProxy: true},
			},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

// defaultsWant is minimal with every documented default, written out rather
// than taken from the Default functions so that a changed default fails.
func defaultsWant(file string) *Config {
	backend := Backend{
		Name: "rabbitmq", Balance: "roundrobin", ConnectTimeout: 5 * time.Second, Retries: 3, Redispatch: true,
		IdleTimeout: 0, TCPKeepalive: 30 * time.Second, SendProxy: "", OnMarkedDown: "keep", OnMarkedUp: "keep",
		HalfCloseTimeout: 0, Slowstart: 0,
		HealthCheck: HealthCheck{
			Type: "amqp", Interval: 2 * time.Second, FastInterval: 500 * time.Millisecond,
			DownInterval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
			VHost: "/", Username: "guest", Password: "guest",
		},
		Servers: []Server{
			{Name: "rmq1", Address: "10.0.0.1:5672", Weight: 1},
			{Name: "rmq2", Address: "10.0.0.2:5672", Weight: 1},
		},
	}
	return &Config{
		File:      file,
		Global:    Global{MaxConnections: 10000, DrainTimeout: 30 * time.Second, LogLevel: "info", LogFormat: "text", AccessLog: true},
		Admin:     Admin{Listen: "127.0.0.1:8404", VHostLabels: 100, SocketLevel: "operator"},
		Frontends: []Frontend{{Name: "amqp", Bind: ":5672", Backend: "rabbitmq", Mode: "amqp"}},
		Backends:  []Backend{backend},
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse("min.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if want := defaultsWant("min.toml"); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
	// The Default functions agree with what Parse fills in.
	if b := DefaultBackend(); !reflect.DeepEqual(b.HealthCheck, got.Backends[0].HealthCheck) {
		t.Errorf("DefaultBackend().HealthCheck = %+v, Parse gave %+v", b.HealthCheck, got.Backends[0].HealthCheck)
	}
	if s := DefaultServer(); s.Weight != 1 {
		t.Errorf("DefaultServer().Weight = %d, want 1", s.Weight)
	}
	if c := DefaultConfig(); !reflect.DeepEqual(c.Global, got.Global) || c.Admin != got.Admin {
		t.Errorf("DefaultConfig() = %+v, Parse gave %+v", c, got)
	}
}

func TestParseExplicitZerosKept(t *testing.T) {
	src := `
[global]
max_connections = 0
drain_timeout = 0
access_log = false

[admin]
listen = ""
vhost_labels = 0

[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"
retries = 0
redispatch = false
tcp_keepalive = "0s"

[backend.health_check]
management = {}

[[backend.server]]
name = "rmq1"
address = "10.0.0.1:5672"
weight = 0

[[backend.server]]
name = "rmq2"
address = "10.0.0.2:5672"
`
	got, err := Parse("zero.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultsWant("zero.toml")
	want.Global.MaxConnections = 0
	want.Global.DrainTimeout = 0
	want.Global.AccessLog = false
	want.Admin.Listen = ""
	want.Admin.VHostLabels = 0
	b := &want.Backends[0]
	b.Retries = 0
	b.Redispatch = false
	b.TCPKeepalive = 0
	b.HealthCheck.Management = &Management{Port: 15672}
	b.Servers[0].Weight = 0 // and the second server, not written, still gets 1
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoad(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "amqplb.toml"))
	if err != nil {
		t.Fatalf("the ARCHITECTURE.md example does not load: %v", err)
	}
	if len(c.Backends) != 1 || len(c.Backends[0].Servers) != 2 || c.Frontends[0].Bind != "127.0.0.1:5672" {
		t.Errorf("Load = %+v", c)
	}
	if c.Warnings != nil {
		t.Errorf("Warnings = %q, want none", c.Warnings)
	}

	_, err = Load(filepath.Join("testdata", "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Setenv("AMQPLB_TEST_UNSET", "")
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "syntax error",
			src:  "[global]\nmax_connections = 10\nlog_level = info\n",
			want: `a.toml:3: syntax error: expected a top-level item to end with a newline, comment, or EOF, but got 'o' instead (strings need quotes: log_level = "info")`,
		},
		{
			name: "duplicate key is a syntax error",
			src:  "[global]\nlog_level = \"info\"\nlog_level = \"debug\"\n",
			want: `a.toml:3: syntax error: Key 'global.log_level' has already been defined.`,
		},
		{
			name: "empty file",
			src:  "",
			want: `a.toml: no frontend defined (add a [[frontend]] with name, bind and backend)`,
		},
		{
			name: "unknown keys with and without a suggestion",
			src: minimal + `weight = 1
wieght = 2
colour = "red"

[globl]
log_level = "info"

[backend.health_check]
intervall = "1s"
`,
			want: `a.toml:18: unknown key backend.server.wieght (did you mean weight?)
a.toml:19: unknown key backend.server.colour
a.toml:21: unknown key globl (did you mean global?)
a.toml:25: unknown key backend.health_check.intervall (did you mean interval?)`,
		},
		{
			name: "type errors",
			src: `
[global]
max_connections = "many"
access_log = "yes"
drain_timeout = "5 seconds"

[[frontend]]
name = 7
bind = ":5672"
backend = "rabbitmq"
tls = "server.pem"

[[backend]]
name = "rabbitmq"
connect_timeout = 5
idle_timeout = 1.5

[[backend.server]]
name = "rmq1"
address = "10.0.0.1:5672"
weight = "x"

[[backend.server]]
name = "rmq2"
address = "10.0.0.2:5672"
max_connections = 1e3
`,
			want: `a.toml:3: global: max_connections: expected an integer, got string "many"
a.toml:4: global: access_log: expected true or false, got string "yes"
a.toml:5: global: drain_timeout: invalid duration "5 seconds" (write a number and a unit, e.g. "500ms", "5s", "1m")
a.toml:8: frontend #1: name: expected a string, got integer 7
a.toml:11: frontend #1: tls: expected a table, got string "server.pem"
a.toml:15: backend "rabbitmq": connect_timeout: a duration needs a unit: write "5s" or "5ms", not 5
a.toml:16: backend "rabbitmq": idle_timeout: expected a duration such as "5s", got float 1.5
a.toml:21: backend "rabbitmq": server "rmq1": weight: expected an integer, got string "x"
a.toml:26: backend "rabbitmq": server "rmq2": max_connections: expected an integer, got float 1000`,
		},
		{
			name: "single table where an array of tables belongs",
			src: `
[frontend]
name = "amqp"
`,
			want: `a.toml:2: frontend: expected an array of tables, written [[frontend]], got a table`,
		},
		{
			name: "duplicates and a missing backend",
			src: `
[[frontend]]
name = "amqp"
bind = "127.0.0.1:5672"
backend = "rabbit"

[[frontend]]
name = "amqp"
bind = "127.0.0.1:5673"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"
server = [
  { name = "rmq1", address = "10.0.0.1:5672" },
  { name = "rmq1", address = "10.0.0.2:5672" },
]

[[backend]]
name = "rabbitmq"
`,
			want: `a.toml:5: frontend "amqp": backend "rabbit" is not defined
a.toml:8: duplicate frontend "amqp" (first defined at line 3)
a.toml:16: backend "rabbitmq": duplicate server "rmq1" (first defined at line 15)
a.toml:20: duplicate backend "rabbitmq" (first defined at line 13)`,
		},
		{
			name: "missing required fields",
			src: `
[[frontend]]
mode = "tcp"

[[backend]]
balance = "first"

[[backend.server]]
weight = 2
`,
			want: `a.toml:2: frontend #1: name is required
a.toml:2: frontend #1: bind is required
a.toml:2: frontend #1: backend is required
a.toml:5: backend #1: name is required
a.toml:8: backend #1: server #1: name is required
a.toml:8: backend #1: server #1: address is required`,
		},
		{
			name: "bad enum values",
			src: `
[global]
log_level = "verbose"
log_format = "xml"

[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"
mode = "http"

[[backend]]
name = "rabbitmq"
balance = "round-robin"
send_proxy = "v3"
on_marked_down = "kill"
health_check = { type = "https" }
server = [{ name = "rmq1", address = "10.0.0.1:5672" }, { name = "rmq2", address = "10.0.0.2:5672" }]
`,
			want: `a.toml:3: global: log_level "verbose" is not one of "debug", "info", "warn", "error"
a.toml:4: global: log_format "xml" is not one of "text", "json"
a.toml:10: frontend "amqp": mode "http" is not one of "amqp", "tcp"
a.toml:14: backend "rabbitmq": balance "round-robin" is not one of "roundrobin", "leastconn", "first", "source", "random"
a.toml:15: backend "rabbitmq": send_proxy "v3" is not one of "", "v1", "v2"
a.toml:16: backend "rabbitmq": on_marked_down "kill" is not one of "keep", "shutdown-sessions"
a.toml:17: backend "rabbitmq": health_check: type "https" is not one of "amqp", "amqp-probe", "tcp", "http", "none"`,
		},
		{
			name: "out of range numbers and durations",
			src: `
[global]
max_connections = -1
drain_timeout = "-5s"

[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"
max_connections = -2

[[backend]]
name = "rabbitmq"
connect_timeout = "0s"
retries = -1
idle_timeout = "-1m"
tcp_keepalive = "-1s"
slowstart = "-1s"

[backend.health_check]
interval = "0s"
fast_interval = "-1ms"
down_interval = "0s"
timeout = "0s"
rise = 0
fall = -1
management = { port = 70000 }

[[backend.server]]
name = "rmq1"
address = "10.0.0.1:5672"
weight = -1
max_connections = -5

[[backend.server]]
name = "rmq2"
address = "10.0.0.2:5672"
weight = 300
`,
			want: `a.toml:3: global: max_connections -1 must not be negative
a.toml:4: global: drain_timeout -5s must not be negative
a.toml:10: frontend "amqp": max_connections -2 must not be negative
a.toml:14: backend "rabbitmq": connect_timeout must be greater than 0, not 0s
a.toml:15: backend "rabbitmq": retries -1 must not be negative
a.toml:16: backend "rabbitmq": idle_timeout -1m must not be negative
a.toml:17: backend "rabbitmq": tcp_keepalive -1s must not be negative
a.toml:18: backend "rabbitmq": slowstart -1s must not be negative
a.toml:21: backend "rabbitmq": health_check: interval must be greater than 0, not 0s
a.toml:22: backend "rabbitmq": health_check: fast_interval must be greater than 0, not -1ms
a.toml:23: backend "rabbitmq": health_check: down_interval must be greater than 0, not 0s
a.toml:24: backend "rabbitmq": health_check: timeout must be greater than 0, not 0s
a.toml:25: backend "rabbitmq": health_check: rise 0 must be at least 1
a.toml:26: backend "rabbitmq": health_check: fall -1 must be at least 1
a.toml:27: backend "rabbitmq": health_check: management: port 70000 out of range 1..65535
a.toml:32: backend "rabbitmq": server "rmq1": weight -1 out of range 0..256
a.toml:33: backend "rabbitmq": server "rmq1": max_connections -5 must not be negative
a.toml:38: backend "rabbitmq": server "rmq2": weight 300 out of range 0..256`,
		},
		{
			name: "binds and addresses",
			src: `
[admin]
listen = "127.0.0.1:8404"

[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"

[[frontend]]
name = "local"
bind = "localhost:5672"
backend = "rabbitmq"

[[frontend]]
name = "all"
bind = "0.0.0.0:5672"
backend = "rabbitmq"

[[frontend]]
name = "admin-clash"
bind = "127.0.0.1:8404"
backend = "rabbitmq"

[[frontend]]
name = "noport"
bind = "5672"
backend = "rabbitmq"

[[frontend]]
name = "badport"
bind = "127.0.0.1:65536"
backend = "rabbitmq"

[[frontend]]
name = "named-port"
bind = "127.0.0.1:amqp"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"

[[backend.server]]
name = "rmq1"
address = "rmq1"

[[backend.server]]
name = "rmq2"
address = ":5672"

[[backend.server]]
name = "rmq3"
address = "10.0.0.3:0"
`,
			want: `a.toml:12: frontend "local": bind localhost:5672 overlaps :5672 of frontend "amqp"
a.toml:17: frontend "all": bind 0.0.0.0:5672 is already used by frontend "amqp"
a.toml:22: frontend "admin-clash": bind 127.0.0.1:8404 is already used by admin.listen
a.toml:27: frontend "noport": bind "5672" is not host:port (e.g. "0.0.0.0:5672")
a.toml:32: frontend "badport": bind "127.0.0.1:65536": port must be a number in 1..65535
a.toml:37: frontend "named-port": bind "127.0.0.1:amqp": port must be a number in 1..65535
a.toml:45: backend "rabbitmq": server "rmq1": address "rmq1" is not host:port (e.g. "10.0.0.5:5672")
a.toml:49: backend "rabbitmq": server "rmq2": address ":5672" has no host (e.g. "10.0.0.5:5672")
a.toml:53: backend "rabbitmq": server "rmq3": address "10.0.0.3:0": port must be a number in 1..65535`,
		},
		{
			name: "tls and passwords",
			src: `
[[frontend]]
name = "a"
bind = ":5671"
backend = "b1"
tls = { cert = "server.pem" }

[[frontend]]
name = "b"
bind = ":5672"
backend = "b2"
tls.key = "server.key"

[[frontend]]
name = "c"
bind = ":5673"
backend = "b2"
[frontend.tls]

[[backend]]
name = "b1"
health_check = { password_env = "AMQPLB_TEST_SURELY_UNSET" }
server = [{ name = "s1", address = "h1:5672" }, { name = "s2", address = "h2:5672" }]

[[backend]]
name = "b2"
health_check = { password = "x", password_env = "AMQPLB_TEST_UNSET" }
server = [{ name = "s1", address = "h1:5672" }, { name = "s2", address = "h2:5672" }]
`,
			want: `a.toml:12: frontend "b": tls: cert is required (a PEM file with the certificate chain, or a directory of them)
a.toml:18: frontend "c": tls: cert is required (a PEM file with the certificate chain, or a directory of them)
a.toml:22: backend "b1": health_check: password_env "AMQPLB_TEST_SURELY_UNSET" is not set in the environment
a.toml:27: backend "b2": health_check: set password or password_env, not both`,
		},
		{
			name: "checks off skips their validation",
			src: minimal + `
[backend.health_check]
type = "none"
timeout = "0s"
rise = 0
bogus = 1
`,
			want: `a.toml:22: unknown key backend.health_check.bogus`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("a.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{name: "none", src: minimal},
		{
			name: "short idle timeout",
			src:  strings.Replace(minimal, `name = "rabbitmq"`, "name = \"rabbitmq\"\nidle_timeout = \"90s\"", 1),
			want: []string{`w.toml:9: backend "rabbitmq": idle_timeout 1m30s is shorter than twice the 1m AMQP heartbeat; idle clients will be cut`},
		},
		{
			name: "idle timeout of twice the heartbeat is fine",
			src:  strings.Replace(minimal, `name = "rabbitmq"`, "name = \"rabbitmq\"\nidle_timeout = \"2m\"", 1),
		},
		{
			name: "one server, no servers, checks off, unused, alarms",
			src: `
[[frontend]]
name = "a"
bind = ":5672"
backend = "one"

[[frontend]]
name = "b"
bind = ":5673"
backend = "empty"

[[backend]]
name = "one"
health_check = { type = "none" }
server = [{ name = "s1", address = "h1:5672" }]

[[backend]]
name = "empty"
health_check.management = { eject_on_alarm = true }

[[backend]]
name = "unused"
server = [{ name = "s1", address = "h1:5672" }, { name = "s2", address = "h2:5672" }]
`,
			want: []string{
				`w.toml:12: backend "one" has only one server; there is nothing to fail over to`,
				`w.toml:14: backend "one": health_check: type "none": servers are never checked, so a dead broker stays in rotation`,
				`w.toml:17: backend "empty" has no servers; its frontends will refuse every connection`,
				`w.toml:19: backend "empty": health_check: management: eject_on_alarm has no effect without alarms = true`,
				`w.toml:21: backend "unused" is not used by any frontend`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("w.toml", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Warnings, tt.want) {
				t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestKeyLines(t *testing.T) {
	src := `# comment [[not.a.table]]
title = """
multi
line = 1
"""
[a]
"quoted.key" = 1
b.c = 'x'
arr = [
  1, # comment
  { k = 2 },
  { k = [3, { m = 4 }] },
]
when = 1979-05-27 07:32:00Z
[[t]]
x = 1
[t.sub]
y = 2
[[t]]
[[t.u]]
z = 3
[[t.u]]
`
	got := keyLines(src)
	want := map[string]int{
		"title": 2, "a": 6, "a.quoted.key": 7, "a.b": 8, "a.b.c": 8, "a.arr": 9,
		"a.arr.1": 11, "a.arr.1.k": 11, "a.arr.2": 12, "a.arr.2.k": 12, "a.arr.2.k.1": 12, "a.arr.2.k.1.m": 12,
		"a.when": 14, "t.0": 15, "t.0.x": 16, "t.0.sub": 17, "t.0.sub.y": 18,
		"t.1": 19, "t.1.u.0": 20, "t.1.u.0.z": 21, "t.1.u.1": 22,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keyLines:\n got %v\nwant %v", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	l := ErrorList{{File: "f.toml", Line: 3, Msg: "x"}, {File: "f.toml", Msg: "y"}}
	if got, want := l.Error(), "f.toml:3: x\nf.toml: y"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var e *Error
	if !errors.As(error(l), &e) || e.Msg != "x" {
		t.Errorf("errors.As(ErrorList, *Error) = %v", e)
	}
}

func TestToTOMLRoundTrip(t *testing.T) {
	t.Setenv("AMQPLB_TEST_PASSWORD", "s3cret")
	odd := strings.Replace(minimal, `name = "rmq1"`, `name = "rmq \"1\"\t\\ é \u0001"`, 1)
	for name, src := range map[string]string{"full": full, "minimal": minimal, "odd strings": odd} {
		t.Run(name, func(t *testing.T) {
			want, err := Parse("a.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			out := ToTOML(want)
			got, err := Parse("a.toml", out)
			if err != nil {
				t.Fatalf("ToTOML output does not parse: %v\n%s", err, out)
			}
			got.Warnings, want.Warnings = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %+v\nwant %+v\n%s", got, want, out)
			}
		})
	}
}

func TestLoadLines(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(toml, []byte("[[frontend]]\nname = \"f\"\nbind = \":5672\"\nbackend = \"b\"\ntls = { cert = \"c.pem\" }\n\n[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"10.0.0.1:5672\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file string
		path string
		want int
	}{
		{toml, "frontend.0.tls", 5},
		{toml, "backend.0.server.0.tls", 9}, // not written: the server's table
	} {
		_, lines, err := LoadLines(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if got := lines.Of(tt.path); got != tt.want {
			t.Errorf("%s: line of %s = %d, want %d", filepath.Base(tt.file), tt.path, got, tt.want)
		}
	}
	var none *Lines
	if none.Of("frontend.0") != 0 {
		t.Error("a nil Lines knows a line")
	}
}
