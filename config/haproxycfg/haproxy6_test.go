package haproxycfg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/config"
)

func TestHAProxyAddr(t *testing.T) {
	t.Setenv("AMQPLB_TEST_BIND", "10.0.0.9")
	tests := []struct{ in, want, err string }{
		{in: ":5672", want: ":5672"},
		{in: "*:5672", want: ":5672"},
		{in: "0.0.0.0:5672", want: "0.0.0.0:5672"},
		{in: ":::5672", want: "[::]:5672"},
		{in: "[::1]:5672", want: "[::1]:5672"},
		{in: "ipv4@:5672", want: "0.0.0.0:5672"},
		{in: "ipv6@:5672", want: "[::]:5672"},
		{in: "ipv4@127.0.0.1:5672", want: "127.0.0.1:5672"},
		{in: "ipv6@::1:5672", want: "[::1]:5672"},
		{in: "tcp@rabbit:5672", want: "rabbit:5672"},
		{in: "${AMQPLB_TEST_BIND}:5672", want: "10.0.0.9:5672"},
		{in: "$AMQPLB_TEST_BIND:5672", want: "10.0.0.9:5672"},
		{in: "rabbit", want: "rabbit"},
		{in: "udp@:514", err: "address udp@:514: only TCP addresses are supported"},
		{in: "/run/x.sock", err: "address /run/x.sock: UNIX sockets are not supported"},
		{in: ":5672-5680", err: "address :5672-5680: port ranges and offsets are not supported"},
	}
	for _, tt := range tests {
		got, err := hapAddr(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("hapAddr(%q) error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("hapAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestHAProxyLogTargets(t *testing.T) {
	tests := []struct{ in, kind, addr string }{
		{"127.0.0.1", "udp", "127.0.0.1:514"},
		{"127.0.0.1:5140", "udp", "127.0.0.1:5140"},
		{"udp@syslog.internal:514", "udp", "syslog.internal:514"},
		{"udp6@[::1]:514", "udp", "[::1]:514"},
		{"::1", "udp", "[::1]:514"},
		{"stdout", "stdout", ""},
		{"fd@1", "stdout", ""},
		{"stderr", "stderr", ""},
		{"/dev/log", "unix", "/dev/log"},
		{"unix@/dev/log", "unix", "/dev/log"}, {"unix@relative", "other", ""},
		{"ring@buf", "other", ""},
		{"tcp@127.0.0.1:601", "other", ""},
	}
	for _, tt := range tests {
		if kind, addr := logTarget(tt.in); kind != tt.kind || addr != tt.addr {
			t.Errorf("logTarget(%q) = %q, %q; want %q, %q", tt.in, kind, addr, tt.kind, tt.addr)
		}
	}
}

// TestHAProxyImport checks mappings one by one on small files.
func TestHAProxyImport(t *testing.T) {
	dir := t.TempDir()
	allow := filepath.Join(dir, "allow.lst")
	if err := os.WriteFile(allow, []byte("# trusted\n10.0.0.0/8\n\n192.168.1.1 office\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, c *config.Config)
		warn  []string // substrings of the warnings, in order
	}{
		{
			name: "use_backend without a condition wins over default_backend",
			src: `frontend f
	bind :5672
	default_backend a
	use_backend b
	use_backend a
backend a
	option tcp-check
	server s1 10.0.0.1:5672 check
	server s2 10.0.0.2:5672 check
backend b
	option tcp-check
	server s1 10.0.0.1:5672 check
	server s2 10.0.0.2:5672 check
`,
			check: func(t *testing.T, c *config.Config) {
				if c.Frontends[0].Backend != "b" {
					t.Errorf("backend = %q, want b", c.Frontends[0].Backend)
				}
			},
			warn: []string{
				"i.cfg:3: frontend f: default_backend a is not used: use_backend b (line 4) always applies",
				"i.cfg:5: ignored: use_backend a (use_backend b, line 4, always applies before it)",
				`i.cfg:6: backend "a" is not used by any frontend`,
			},
		},
		{
			name: "a server without a port gets its frontend's",
			src: `listen amqp
	bind :5673
	option tcp-check
	server s1 10.0.0.1 check
	server s2 rabbit-2 check
`,
			check: func(t *testing.T, c *config.Config) {
				b := c.Backends[0]
				if b.Servers[0].Address != "10.0.0.1:5673" || b.Servers[1].Address != "rabbit-2:5673" {
					t.Errorf("addresses %q %q", b.Servers[0].Address, b.Servers[1].Address)
				}
			},
		},
		{
			name: "the AMQP recipe in hex, any case, and a script that is not it",
			src: `defaults
	mode tcp
	option tcp-check
	tcp-check send-binary 414D515000000901
	tcp-check expect ! string x
listen amqp
	bind :5672
	server s1 10.0.0.1:5672 check
	server s2 10.0.0.2:5672 check
listen other
	bind :5673
	tcp-check connect port 5680
	tcp-check send-binary 414d515000000901
	tcp-check expect binary 01
	tcp-check send "x"
	server s1 10.0.0.1:5672 check
	server s2 10.0.0.2:5672 check port 5681
`,
			check: func(t *testing.T, c *config.Config) {
				if h := c.Backends[0].HealthCheck; h.Type != "amqp-probe" || h.TCPCheck != nil {
					t.Errorf("amqp: %+v, want the recipe inherited from defaults as amqp-probe", h)
				}
				h := c.Backends[1].HealthCheck
				want := []config.TCPCheckStep{{Action: "send-binary", Data: "414d515000000901"}, {Action: "expect", Match: "binary", Pattern: "01"}, {Action: "send", Data: "x"}}
				if h.Type != "tcp" || !reflect.DeepEqual(h.TCPCheck, want) {
					t.Errorf("other: %+v, want type tcp and %+v", h, want)
				}
				for _, s := range c.Backends[1].Servers {
					if s.CheckPort != 5680 {
						t.Errorf("other: server %s check_port %d, want tcp-check connect's 5680", s.Name, s.CheckPort)
					}
				}
			},
			warn: []string{`i.cfg:4: backend "amqp": this tcp-check sends the AMQP 0-9-1 protocol header`},
		},
		{
			name: "tcp-check rules without option tcp-check",
			src: `listen amqp
	bind :5673
	tcp-check send PING
	server s1 10.0.0.1:5673 check
	server s2 10.0.0.2:5673 check
`,
			check: func(t *testing.T, c *config.Config) {
				if h := c.Backends[0].HealthCheck; h.Type != "tcp" || h.TCPCheck != nil {
					t.Errorf("%+v, want a plain tcp check", h)
				}
			},
			warn: []string{"i.cfg:3: ignored: tcp-check rules without option tcp-check (HAProxy ignores them too)"},
		},
		{
			name: "stats pages and exporters",
			src: `frontend a
	bind :9001
	mode http
	stats uri /s
frontend b
	bind :9002
	mode http
	stats enable
	stats realm Ops
	acl prom path_beg /prom
	http-request use-service prometheus-exporter if prom
	http-request set-log-level silent
frontend c
	bind :9003
	mode http
	http-request use-service prometheus-exporter
` + hapListen + "\toption tcp-check\n",
			check: func(t *testing.T, c *config.Config) {
				want := []config.Stats{
					{Name: "a", Bind: ":9001", URI: "/s", Realm: "HAProxy Statistics"},
					{Name: "b", Bind: ":9002", URI: "/haproxy?stats", Realm: "Ops", Metrics: "/prom"},
					{Name: "c", Bind: ":9003", Realm: "HAProxy Statistics", Metrics: "/metrics"},
				}
				if !reflect.DeepEqual(c.Stats, want) {
					t.Errorf("stats:\n got %+v\nwant %+v", c.Stats, want)
				}
			},
			warn: []string{
				"i.cfg:12: ignored: http-request set-log-level (amqplb's stats listener takes no HTTP rules)",
				"i.cfg:16: HAProxy serves the Prometheus exporter on every path here; amqplb serves its metrics at /metrics",
			},
		},
		{
			name: "TLS to servers and from clients, with bases",
			src: `global
	crt-base /etc/ssl/amqp
	ca-base /etc/ssl/ca
	ssl-server-verify none
listen amqps
	bind :5671 ssl crt server.pem ca-file clients.pem verify required
	option tcp-check
	server s1 10.0.0.1:5671 ssl check
	server s2 10.0.0.2:5671 ssl verify required ca-file /abs/ca.pem verifyhost rabbit-2 crt client.pem check
	server s3 10.0.0.3:5672 check verify none
	server s4 10.0.0.4:5671 ssl check port 5672
	server s5 10.0.0.5:5671 ssl check port 5671 check-ssl
	server s6 10.0.0.6:5671 ssl check no-check-ssl
`,
			check: func(t *testing.T, c *config.Config) {
				if got, want := c.Frontends[0].TLS, (&config.TLS{Cert: "/etc/ssl/amqp/server.pem", CA: "/etc/ssl/ca/clients.pem", Verify: "required"}); !reflect.DeepEqual(got, want) {
					t.Errorf("frontend tls = %+v, want %+v", got, want)
				}
				s := c.Backends[0].Servers
				if got, want := s[0].TLS, (&config.ServerTLS{Verify: "none"}); !reflect.DeepEqual(got, want) {
					t.Errorf("s1 tls = %+v, want %+v", got, want)
				}
				if got, want := s[1].TLS, (&config.ServerTLS{Verify: "required", CA: "/abs/ca.pem", ServerName: "rabbit-2", Cert: "/etc/ssl/amqp/client.pem"}); !reflect.DeepEqual(got, want) {
					t.Errorf("s2 tls = %+v, want %+v", got, want)
				}
				if s[2].TLS != nil {
					t.Errorf("s3 tls = %+v, want none", s[2].TLS)
				}
				// Checks speak TLS as the traffic does without port;
				// check-ssl forces it, no-check-ssl turns it off.
				for i, want := range []bool{true, true, false, false, true, false} {
					if s[i].CheckTLS != want {
						t.Errorf("%s check_tls = %v, want %v", s[i].Name, s[i].CheckTLS, want)
					}
				}
			},
			warn: []string{`i.cfg:10: backend "amqps": server "s3": TLS options without ssl are not used`},
		},
		{
			name: "ACLs from a file, predefined ACLs, legacy frontend address",
			src: `frontend amqp 127.0.0.1:5672
	acl ok src -f ` + allow + `
	tcp-request connection accept if LOCALHOST
	tcp-request connection reject unless ok
	tcp-request connection reject if FALSE
	default_backend rabbitmq
backend rabbitmq
	option tcp-check
	server s1 10.0.0.1:5672 check
	server s2 10.0.0.2:5672 check
`,
			check: func(t *testing.T, c *config.Config) {
				f := c.Frontends[0]
				if f.Bind != "127.0.0.1:5672" {
					t.Errorf("bind = %q", f.Bind)
				}
				wantACL := map[string][]string{"ok": {"10.0.0.0/8", "192.168.1.1"}, "LOCALHOST": {"127.0.0.1/8", "::1"}, "FALSE": nil}
				if !reflect.DeepEqual(f.ACL, wantACL) {
					t.Errorf("acl = %#v, want %#v", f.ACL, wantACL)
				}
				wantRules := []config.TCPRule{{Layer: "connection", Action: "accept", If: "LOCALHOST"}, {Layer: "connection", Action: "reject", Unless: "ok"}, {Layer: "connection", Action: "reject", If: "FALSE"}}
				if !reflect.DeepEqual(f.TCPRequest, wantRules) {
					t.Errorf("tcp_request = %+v, want %+v", f.TCPRequest, wantRules)
				}
			},
			warn: []string{"i.cfg:1: frontend amqp 127.0.0.1:5672: the address is read as bind 127.0.0.1:5672"},
		},
		{
			name: "half-close, on-marked-up, dontlognull, a bind on the admin port",
			src: `defaults
	option dontlognull
	timeout client-fin 5s
frontend f
	bind 127.0.0.1:8404
	no option dontlognull
	default_backend b
backend b
	timeout server-fin 7s
	option tcp-check
	server s1 10.0.0.1:5672 check on-marked-up shutdown-backup-sessions
	server s2 10.0.0.2:5672 check
`,
			check: func(t *testing.T, c *config.Config) {
				b := c.Backends[0]
				if b.HalfCloseTimeout != 5*time.Second || b.OnMarkedUp != "shutdown-backup-sessions" {
					t.Errorf("half_close_timeout %v, on_marked_up %q", b.HalfCloseTimeout, b.OnMarkedUp)
				}
				if c.Frontends[0].DontLogNull {
					t.Errorf("dont_log_null set despite no option dontlognull")
				}
				if c.Admin.Listen != "" {
					t.Errorf("admin.listen = %q, want it turned off", c.Admin.Listen)
				}
			},
			warn: []string{
				`i.cfg:5: admin.listen 127.0.0.1:8404 is turned off: bind 127.0.0.1:8404 takes its port`,
				`i.cfg:9: backend "b": timeout server-fin 7s is not used`,
				`i.cfg:12: backend "b": server "s2" has no on-marked-up but server "s1" (line 11) has shutdown-backup-sessions`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseHAProxy("i.cfg", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
			i := 0
			for _, w := range c.Warnings {
				if i < len(tt.warn) && strings.HasPrefix(w, tt.warn[i]) {
					i++
				}
			}
			if i < len(tt.warn) {
				t.Errorf("no warning %q in:\n%s", tt.warn[i], strings.Join(c.Warnings, "\n"))
			}
			// Whatever imports converts.
			out, _, err := Convert("i.cfg", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			back, err := config.Parse("i.toml", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			back.File, back.Warnings = c.File, c.Warnings
			if !reflect.DeepEqual(back, c) {
				t.Errorf("converted TOML loads to another Config:\n got %+v\nwant %+v", back, c)
			}
		})
	}
}
