package haproxycfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/config"
)

// rabbitmqCfg is a haproxy.cfg as RabbitMQ guides write it.
const rabbitmqCfg = `# HAProxy in front of a 3-node RabbitMQ cluster
global
    log 127.0.0.1 local0 notice
    maxconn 4096
    chroot /var/lib/haproxy
    user haproxy
    group haproxy
    daemon
    stats socket /run/haproxy/admin.sock mode 660 level admin

defaults
    log     global
    mode    tcp
    option  tcplog
    option  dontlognull
    retries 3
    option  redispatch
    timeout connect 5s
    timeout client  3h
    timeout server  3h

listen rabbitmq_cluster
    bind *:5672
    balance roundrobin
    option tcpka
    server rmq1 10.0.0.1:5672 check inter 5s rise 2 fall 3
    server rmq2 10.0.0.2:5672 check inter 5s rise 2 fall 3
    server rmq3 10.0.0.3:5672 check inter 5s rise 2 fall 3

listen stats
    bind *:1936
    mode http
    stats enable
    stats uri /
    stats refresh 5s
    stats auth admin:secret
`

// hapBackend is a Backend with amqplb's defaults and the given name and
// servers, each of weight 1.
func hapBackend(name string, addrs ...string) config.Backend {
	b := config.DefaultBackend()
	b.Name = name
	for i, a := range addrs {
		b.Servers = append(b.Servers, config.Server{Name: "rmq" + string(rune('1'+i)), Address: a, Weight: 1})
	}
	return b
}

func TestHAProxyRabbitMQ(t *testing.T) {
	got, _, err := parseHAProxy("haproxy.cfg", []byte(rabbitmqCfg))
	if err != nil {
		t.Fatal(err)
	}
	b := hapBackend("rabbitmq_cluster", "10.0.0.1:5672", "10.0.0.2:5672", "10.0.0.3:5672")
	b.IdleTimeout = 3 * time.Hour
	b.HealthCheck.Interval = 5 * time.Second
	b.HealthCheck.Type = "amqp-probe"
	want := &config.Config{
		File: "haproxy.cfg",
		Global: config.Global{MaxConnections: 4096, DrainTimeout: 30 * time.Second, LogLevel: "info", LogFormat: "text", AccessLog: true,
			Log: []config.LogTarget{{Address: "127.0.0.1:514", Facility: "local0", Level: "notice"}}, User: "haproxy", Group: "haproxy"},
		Admin: config.Admin{Listen: "127.0.0.1:8404", VHostLabels: 100, Socket: "/run/haproxy/admin.sock", SocketMode: "660",
			SocketLevel: "admin"},
		Frontends: []config.Frontend{{Name: "rabbitmq_cluster", Bind: ":5672", Backend: "rabbitmq_cluster", Mode: "tcp", DontLogNull: true}},
		Backends:  []config.Backend{b},
		Stats: []config.Stats{{Name: "stats", Bind: ":1936", URI: "/", Auth: []string{"admin:secret"}, Realm: "HAProxy Statistics",
			Refresh: 5 * time.Second}},
		Warnings: []string{
			"haproxy.cfg:5: ignored: chroot (amqplb does not chroot; confine it with the service manager)",
			"haproxy.cfg:8: ignored: daemon (amqplb runs in the foreground; let the service manager run it)",
			"haproxy.cfg:14: ignored: option tcplog (amqplb writes its own access-log line per session)",
			`haproxy.cfg:26: backend "rabbitmq_cluster": check is upgraded from HAProxy's TCP connect to an AMQP probe (type "amqp-probe": the protocol header, then a valid Connection.Start) because server rmq1 is on port 5672, so that a broker that accepts connections but does not answer is taken out; to keep a plain TCP check write "option tcp-check" in this section, or type = "tcp" in the converted TOML`,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("import:\n got %+v\nwant %+v\n%s", got, want, config.ToTOML(got))
		t.Errorf("warnings:\n%s", strings.Join(got.Warnings, "\n"))
	}

	// Load picks the importer for any name but *.toml.
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(rabbitmqCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path || !reflect.DeepEqual(c.Backends, want.Backends) {
		t.Errorf("Load(%s) = %+v", path, c)
	}
}

func TestHAProxyFrontendBackend(t *testing.T) {
	src := `global
	maxconn 20000
	hard-stop-after 1m
	crt-base /etc/ssl

defaults
	mode tcp
	timeout connect 3000
	timeout client 2h
	timeout server 3h
	maxconn 500

frontend amqp
	bind 10.0.0.10:5672 accept-proxy
	bind [::1]:5672,ipv4@127.0.0.1:5673
	default_backend rabbitmq

frontend amqps
	bind :5671 ssl crt amqp.pem
	maxconn 100
	timeout client 90m
	default_backend rabbitmq

backend rabbitmq
	balance leastconn
	retries 5
	no option redispatch
	no option tcpka
	option tcp-check
	tcp-check connect
	timeout check 2s
	default-server inter 3s fastinter 1s downinter 10s rise 1 fall 2 send-proxy-v2 slowstart 30s on-marked-down shutdown-sessions
	server rmq1 rabbit-1.internal:5672 check weight 10 maxconn 1000
	server rmq2 fd00::2:5672 check
	server rmq3 10.0.0.3:5672 check backup
`
	got, _, err := parseHAProxy("fb.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	b := config.Backend{
		Name: "rabbitmq", Balance: "leastconn", ConnectTimeout: 3 * time.Second, Retries: 5, Redispatch: false,
		IdleTimeout: 90 * time.Minute, TCPKeepalive: 0, SendProxy: "v2", OnMarkedDown: "shutdown-sessions",
		OnMarkedUp: "keep", Slowstart: 30 * time.Second,
		HealthCheck: config.HealthCheck{
			Type: "tcp", Interval: 3 * time.Second, FastInterval: time.Second, DownInterval: 10 * time.Second,
			Timeout: 2 * time.Second, Rise: 1, Fall: 2, VHost: "/", Username: "guest", Password: "guest",
		},
		Servers: []config.Server{
			{Name: "rmq1", Address: "rabbit-1.internal:5672", Weight: 10, MaxConnections: 1000},
			{Name: "rmq2", Address: "[fd00::2]:5672", Weight: 1},
			{Name: "rmq3", Address: "10.0.0.3:5672", Weight: 1, Backup: true},
		},
	}
	want := &config.Config{
		File:   "fb.cfg",
		Global: config.Global{MaxConnections: 20000, DrainTimeout: time.Minute, LogLevel: "info", LogFormat: "text", AccessLog: true},
		Admin:  config.Admin{Listen: "127.0.0.1:8404", VHostLabels: 100, SocketLevel: "operator"},
		Frontends: []config.Frontend{
			{Name: "amqp", Bind: "10.0.0.10:5672", Backend: "rabbitmq", Mode: "tcp", MaxConnections: 500, AcceptProxy: true},
			{Name: "amqp-2", Bind: "[::1]:5672", Backend: "rabbitmq", Mode: "tcp", MaxConnections: 500},
			{Name: "amqp-3", Bind: "127.0.0.1:5673", Backend: "rabbitmq", Mode: "tcp", MaxConnections: 500},
			{Name: "amqps", Bind: ":5671", Backend: "rabbitmq", Mode: "tcp", MaxConnections: 100,
				TLS: &config.TLS{Cert: "/etc/ssl/amqp.pem", Verify: "none"}},
		},
		Backends: []config.Backend{b},
		Warnings: []string{
			"fb.cfg:9: backend \"rabbitmq\": timeout client 2h is not used: amqplb has one idle_timeout per backend (no traffic either way) and takes the smaller of timeout client and timeout server, 1h30m (line 21)",
			"fb.cfg:10: backend \"rabbitmq\": timeout server 3h is not used: amqplb has one idle_timeout per backend (no traffic either way) and takes the smaller of timeout client and timeout server, 1h30m (line 21)",
			"fb.cfg:11: frontend amqp: maxconn 500 now applies to each of its 3 addresses, which become separate frontends",
			"fb.cfg:15: frontend amqp: bind [::1]:5672 becomes frontend \"amqp-2\" (amqplb has one address per frontend)",
			"fb.cfg:15: frontend amqp: bind 127.0.0.1:5673 becomes frontend \"amqp-3\" (amqplb has one address per frontend)",
			// As HAProxy does: the explicit connect sends no PROXY header.
			"fb.cfg:30: backend \"rabbitmq\": tcp-check connect without default checks in plain TCP with no PROXY header, as in HAProxy, though server \"rmq1\" has ssl or send-proxy: check_tls and check_send_proxy are false (write tcp-check connect default to check the way the traffic goes)",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("import:\n got %+v\nwant %+v\n%s", got, want, config.ToTOML(got))
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got.Warnings, "\n"), strings.Join(want.Warnings, "\n"))
	}
}

func TestHAProxyDefaults(t *testing.T) {
	src := `defaults base
	timeout connect 2s
	retries 1
	default-server inter 4s rise 3

defaults
	timeout connect 7s

listen a
	bind :5672
	server rmq1 h1:5672 check
	server rmq2 h2:5672 check

listen b from base
	bind :5673
	default-server fall 5
	server rmq1 h1:5672 check inter 4s rise 3
	server rmq2 h2:5672 check
	default-server weight 7
	server rmq3 h3:5672 check
`
	c, _, err := parseHAProxy("d.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// a: only the second (unnamed) defaults applies: it resets the first.
	a := c.Backends[0]
	if a.ConnectTimeout != 7*time.Second || a.Retries != config.DefaultRetries || a.HealthCheck.Interval != config.DefaultCheckInterval || a.HealthCheck.Rise != config.DefaultCheckRise {
		t.Errorf("listen a: %+v", a)
	}
	// b: from base, plus its own default-server for the servers after it.
	b := c.Backends[1]
	h := b.HealthCheck
	if b.ConnectTimeout != 2*time.Second || b.Retries != 1 || h.Interval != 4*time.Second || h.Rise != 3 || h.Fall != 5 {
		t.Errorf("listen b: %+v", b)
	}
	if w := []int{b.Servers[0].Weight, b.Servers[1].Weight, b.Servers[2].Weight}; !reflect.DeepEqual(w, []int{1, 1, 7}) {
		t.Errorf("listen b weights = %v, want [1 1 7]", w)
	}
	// Only the upgrade of each backend's plain check to amqp-probe.
	if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], "d.cfg:11: backend \"a\": check is upgraded") ||
		!strings.Contains(c.Warnings[1], "d.cfg:17: backend \"b\": check is upgraded") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestHAProxyIdleTimeout(t *testing.T) {
	tests := []struct {
		lines string
		want  time.Duration
	}{
		{"", 0},
		{"\ttimeout client 2h\n", 2 * time.Hour},
		{"\ttimeout server 4h\n", 4 * time.Hour},
		{"\ttimeout client 5h\n\ttimeout server 4h\n", 4 * time.Hour},
		// HAProxy applies tunnel instead of both once a session is established.
		{"\ttimeout client 1m\n\ttimeout server 1m\n\ttimeout tunnel 8h\n", 8 * time.Hour},
	}
	for _, tt := range tests {
		c, _, err := parseHAProxy("i.cfg", []byte(hapListen+tt.lines))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Backends[0].IdleTimeout; got != tt.want {
			t.Errorf("%q: idle_timeout = %v, want %v", tt.lines, got, tt.want)
		}
	}
}

func TestParseHAProxyTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "5000", want: 5 * time.Second},
		{in: "0", want: 0},
		{in: "250us", want: 250 * time.Microsecond},
		{in: "100ms", want: 100 * time.Millisecond},
		{in: "5s", want: 5 * time.Second},
		{in: "30m", want: 30 * time.Minute},
		{in: "3h", want: 3 * time.Hour},
		{in: "1d", want: 24 * time.Hour},
		{in: "", err: `invalid time "" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "5 s", err: `invalid time "5 s" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "1.5s", err: `invalid time "1.5s" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "-1s", err: `invalid time "-1s" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "5sec", err: `invalid time "5sec" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "s", err: `invalid time "s" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)`},
		{in: "999999999d", err: `time "999999999d" is too large`},
	}
	for _, tt := range tests {
		got, err := parseHAProxyTime(tt.in)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("parseHAProxyTime(%q) error = %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseHAProxyTime(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	t.Setenv("AMQPLB_TEST_HOST", "10.0.0.9")
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: "   # only a comment", want: nil},
		{in: "\tserver  rmq1\t10.0.0.1:5672 check # first node", want: []string{"server", "rmq1", "10.0.0.1:5672", "check"}},
		{in: `log-format "%ci:%cp [%t]"`, want: []string{"log-format", "%ci:%cp [%t]"}},
		{in: `description 'a # b' c\ d`, want: []string{"description", "a # b", "c d"}},
		{in: `x "" y`, want: []string{"x", "", "y"}},
		{in: `bind "${AMQPLB_TEST_HOST}:5672"`, want: []string{"bind", "10.0.0.9:5672"}},
		// HAProxy 2.x expands variables inside double quotes only (an
		// address expands them itself: see TestHAProxyAddr).
		{in: `bind ${AMQPLB_TEST_HOST}:5672 '${AMQPLB_TEST_HOST}'`, want: []string{"bind", "${AMQPLB_TEST_HOST}:5672", "${AMQPLB_TEST_HOST}"}},
		{in: `x "$AMQPLB_TEST_HOST:1" "${AMQPLB_TEST_SURELY_UNSET-dflt}" "${AMQPLB_TEST_HOST-dflt}" "\$5"`, want: []string{"x", "10.0.0.9:1", "dflt", "10.0.0.9", "$5"}},
		{in: `description "unterminated`, err: `unmatched " quote`},
		{in: `bind "${HOST:5672"`, err: `unterminated ${ in "${HOST:5672\""`},
		{in: `x "$5"`, err: `invalid variable name after $ in "$5\"" (write "\$" for a dollar sign)`},
		// Escapes: \r \n \t \xHH are bytes; other backslashes stay.
		{in: `tcp-check send AMQP\x00\x00\x09\x01 PING\r\n a\tb \d\. \$x "\"q\"" \#`, want: []string{"tcp-check", "send", "AMQP\x00\x00\x09\x01", "PING\r\n", "a\tb", `\d\.`, `\$x`, `"q"`, "#"}},
		{in: `x \xZZ`, err: `invalid \x escape in "\\xZZ" (write \xHH, two hex digits)`},
		{in: "x y\rz", want: []string{"x", "y"}},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if err != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, %q; want %q, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// hapListen is a valid listen section to which tests add lines.
const hapListen = `listen rabbitmq
	bind :5672
	server rmq1 10.0.0.1:5672 check
	server rmq2 10.0.0.2:5672 check
`

func TestHAProxyErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "empty file",
			src:  "# nothing\n",
			want: "h.cfg: no listen or frontend section with a bind line: nothing to serve",
		},
		{
			name: "outside any section",
			src:  "maxconn 10\n" + hapListen,
			want: "h.cfg:1: maxconn is outside any section (start with global, defaults, listen, frontend or backend)",
		},
		{
			name: "unknown keywords",
			src:  "global\n\tmaxconn 10\n\tfrobnicate yes\n" + hapListen + "\tbalanse roundrobin\n",
			want: `h.cfg:3: unknown keyword "frobnicate" in section "global"
h.cfg:8: unknown keyword "balanse" in section "listen rabbitmq"`,
		},
		{
			name: "unknown option and timeout",
			src:  hapListen + "\toption turbo\n\ttimeout forever 1s\n",
			want: `h.cfg:5: unknown option "turbo" in section "listen rabbitmq"
h.cfg:6: unknown timeout "forever" in section "listen rabbitmq"`,
		},
		{
			name: "balance not supported",
			src:  hapListen + "\tbalance uri\n",
			want: `h.cfg:5: balance uri is not supported; use one of roundrobin, static-rr, leastconn, first, source, random`,
		},
		{
			name: "bad times and numbers",
			src:  hapListen + "\ttimeout connect 5 s\n\tretries -1\n\tserver rmq3 10.0.0.3:5672 check inter x2 rise many\n",
			want: `h.cfg:5: timeout connect: unexpected "s" after "5"
h.cfg:6: retries: invalid number "-1" (a whole number, 0 or more)
h.cfg:7: server option inter: invalid time "x2" (a number with an optional unit us, ms, s, m, h or d; a bare number is milliseconds)
h.cfg:7: server option rise: invalid number "many"`,
		},
		{
			name: "behaviour that cannot be honoured",
			src: `frontend amqp
	bind :5672
	acl to_tls dst_port 5671
	tcp-request connection reject if to_tls
	tcp-request connection track-sc0 src
	use_backend other if { dst_port 5673 }
	rate-limit sessions 100
	default_backend rabbitmq
backend rabbitmq
	stick-table type ip size 1m
	stick on src
	option ssl-hello-chk
	server rmq1 10.0.0.1:5672 check ssl verify none sni req.ssl_sni
	server rmq2 10.0.0.2:5672 track rabbitmq/rmq1
	tcp-request connection reject
listen web
	bind :8080
	mode http
	stats enable
	server www 10.0.0.9:80
`,
			want: `h.cfg:4: tcp-request connection reject: acl "to_tls" (line 3) matches dst_port; amqplb's rules match the client address only (src)
h.cfg:5: tcp-request connection track-sc0: only accept and reject are supported
h.cfg:6: use_backend other if { dst_port 5673 }: content switching is not supported, except on the TLS server name (use_backend B if { req_ssl_sni -i NAME }); use_backend without a condition (or default_backend) is
h.cfg:7: rate-limit: rate limits are not supported
h.cfg:10: stick-table: stick tables are not supported (balance source gives affinity)
h.cfg:11: stick: stick tables are not supported (balance source gives affinity)
h.cfg:12: option ssl-hello-chk: only AMQP and TCP checks are supported
h.cfg:13: server option sni req.ssl_sni: only sni str(NAME) is supported (a fixed name)
h.cfg:14: server option track: tracking another server's checks is not supported
h.cfg:15: tcp-request connection in section "backend rabbitmq": a backend takes tcp-request content rules only (as in HAProxy)`,
		},
		{
			name: "rules and checks",
			src: `frontend amqp
	bind :5672
	acl lan src 10.0.0.0/8 not-an-address
	acl ok src 10.0.0.0/255.0.0.0
	tcp-request connection accept if ok
	tcp-request content reject if nowhere
	tcp-request content reject unless ok ||
	tcp-request content reject if { src 10.0.0.1
	tcp-request content reject
	tcp-request session accept if ok
	default_backend rabbitmq
backend rabbitmq
	option tcp-check
	tcp-check connect port 5672 ssl
	tcp-check send-binary 414d5
	tcp-check expect rstring (?<=x)
	tcp-check expect string
	tcp-check set-var(check.x) int(1)
	server rmq1 10.0.0.1:5672 check check-ssl
	server rmq2 10.0.0.2:5672 check
`,
			want: `h.cfg:3: acl src: "not-an-address" is not an IP address or CIDR prefix
h.cfg:6: tcp-request content: acl "nowhere" is not defined (define it with acl nowhere src ... before this line)
h.cfg:7: tcp-request content: the condition is empty or ends with an operator
h.cfg:8: tcp-request content: unterminated or empty { ... } in the condition
h.cfg:10: tcp-request session accept: HAProxy still applies the tcp-request content rules (line 9) to the sessions it accepts; amqplb evaluates session and content rules as one layer, where the first matching rule decides, so a session accept followed by a content reject is not supported (write both as tcp-request content rules, in the order that decides as you want)
h.cfg:14: tcp-check connect ssl is not supported (amqplb's checks connect as the server lines say: use port, check-ssl and check-send-proxy there)
h.cfg:15: tcp-check send-binary 414d5: not hex bytes
h.cfg:16: tcp-check expect rstring "(?<=x)": Go's regular expressions (RE2) cannot read it: error parsing regexp: invalid named capture: ` + "`(?<=x)`" + `
h.cfg:17: tcp-check expect string needs a pattern
h.cfg:18: tcp-check set-var(check.x) is not supported (connect, send, send-binary and expect are)
h.cfg:19: backend "rabbitmq": server "rmq1": check-ssl without ssl: amqplb checks speak TLS with the server's tls settings; add ssl, or drop check-ssl`,
		},
		{
			name: "TLS that cannot be imported",
			src: `listen rabbitmq
	bind :5671 ssl crt a.pem crl-file crl.pem
	bind :5672 ssl crt a.pem crt b.pem
	bind :5673 ssl
	bind unix@/run/amqp.sock
	bind :5674-5680
	bind :5675 ca-file ca.pem
	bind :5676 ssl crt a.pem verify required
	server rmq1 10.0.0.1:5672 check
	server rmq2 10.0.0.2:5672 check
listen stats
	bind :8080 ssl crt a.pem
	mode http
	stats enable
`,
			want: `h.cfg:2: bind option crl-file: certificate revocation lists are not supported
h.cfg:3: bind :5672: more than one crt: amqplb takes one, a file or a directory of them
h.cfg:4: bind :5673 ssl needs crt FILE (or crt DIR)
h.cfg:5: bind address unix@/run/amqp.sock: only TCP addresses are supported
h.cfg:6: bind address :5674-5680: port ranges and offsets are not supported
h.cfg:7: bind :5675 has TLS options but not ssl
h.cfg:8: frontend "rabbitmq-7": tls: verify "required" needs ca, the CA bundle that client certificates are checked against
h.cfg:12: listen stats: TLS on a stats listener is not supported`,
		},
		{
			name: "structure",
			src: `defaults
	bind :5672
frontend amqp
	bind :5672
	server rmq1 10.0.0.1:5672
frontend nobackend
	bind :5673
frontend nobind
	default_backend rabbitmq
backend rabbitmq
	bind :5674
	default_backend x
	server rmq1 10.0.0.1:5672
	server rmq2
listen
listen x from nowhere
	bind :5675
	server rmq1 10.0.0.1:5672
`,
			want: `h.cfg:2: bind is not allowed in section "defaults"
h.cfg:3: frontend amqp has no default_backend
h.cfg:5: server is not allowed in section "frontend amqp"
h.cfg:6: frontend nobackend has no default_backend
h.cfg:8: frontend nobind has no bind line
h.cfg:11: bind is not allowed in section "backend rabbitmq"
h.cfg:12: default_backend is not allowed in section "backend rabbitmq"
h.cfg:14: server needs an address
h.cfg:15: listen needs a name
h.cfg:16: listen x: defaults section "nowhere" is not defined before it`,
		},
		{
			name: "validation errors carry the directive's line",
			src: `global
	maxconn 10
defaults
	timeout connect 0
listen rabbitmq
	bind :99999
	server rmq1 10.0.0.1:5672 check weight 300
	server rmq1 10.0.0.2 check rise 0
listen other
	bind :5672
	server rmq1 10.0.0.1:5672
`,
			want: `h.cfg:4: backend "rabbitmq": connect_timeout must be greater than 0, not 0s
h.cfg:4: backend "other": connect_timeout must be greater than 0, not 0s
h.cfg:6: frontend "rabbitmq": bind ":99999": port must be a number in 1..65535
h.cfg:7: backend "rabbitmq": server "rmq1": weight 300 out of range 0..256
h.cfg:8: backend "rabbitmq": duplicate server "rmq1" (first defined at line 7)
h.cfg:8: backend "rabbitmq": server "rmq1": address "10.0.0.2:99999": port must be a number in 1..65535`,
		},
		{
			name: "unmatched quote",
			src:  hapListen + "\tdescription \"oops\n",
			want: `h.cfg:5: unmatched " quote`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseHAProxy("h.cfg", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			var list config.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestHAProxyWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{name: "none", src: hapListen + "\toption tcp-check\n"},
		{
			name: "harmless directives",
			src: `global
	nbthread 4
	pidfile /run/haproxy.pid
	tune.bufsize 32768
	ssl-default-bind-ciphers HIGH
defaults
	option http-server-close
	timeout queue 1m
	timeout client-fin 30s
` + hapListen + `	option splice-auto
	acl internal src 10.0.0.0/8
	server rmq3 10.0.0.3:5672 check resolvers dns init-addr none port 15672
`,
			want: []string{
				"w.cfg:2: ignored: nbthread (Go schedules on every core)",
				"w.cfg:3: ignored: pidfile (amqplb writes no pid file; the service manager tracks it)",
				"w.cfg:4: ignored: tune.bufsize (HAProxy tuning that amqplb does not need)",
				"w.cfg:5: ignored: ssl-default-bind-ciphers (amqplb uses Go's TLS defaults: TLS 1.2 and later, modern ciphers)",
				"w.cfg:7: ignored: option http-server-close (needs mode http)",
				"w.cfg:8: ignored: timeout queue (amqplb has no queue: a connection finds a server or is refused)",
				"w.cfg:14: ignored: option splice-auto (amqplb always splices)",
				"w.cfg:15: ignored: acl internal (no rule uses it)",
				"w.cfg:16: ignored: server option resolvers (amqplb re-resolves host names itself)",
				"w.cfg:16: ignored: server option init-addr (amqplb resolves host names when it starts and again before each connection)",
			},
		},
		{
			name: "skipped sections",
			src: `userlist admins
	user admin insecure-password secret
frontend prometheus
	bind :8405
	mode http
	http-request use-service prometheus-exporter if { path /metrics }
listen old
	disabled
	bind :5673
` + hapListen + "\toption tcp-check\n",
			want: []string{
				"w.cfg:1: ignored: section userlist admins (amqplb has no use for it)",
				"w.cfg:8: ignored: section listen old (disabled)",
			},
		},
		{
			name: "approximations",
			src: `defaults
	timeout client 1m
	timeout server 1m
listen rabbitmq
	bind :5672
	balance static-rr
	option httpchk GET /api/health/checks/alarms
	http-check expect status 200
	server rmq1 10.0.0.1:5672 check inter 5s
	server rmq2 10.0.0.2:5672 check inter 2s fall 5 slowstart 10s
	server rmq3 10.0.0.3:5672 disabled
`,
			want: []string{
				`w.cfg:3: backend "rabbitmq": idle_timeout 1m is shorter than twice the 1m AMQP heartbeat; idle clients will be cut`,
				"w.cfg:6: balance static-rr is imported as roundrobin (weights changed at run time take effect at once)",
				`w.cfg:7: backend "rabbitmq": option httpchk: the servers serve AMQP, so the check is an AMQP probe (type "amqp-probe": the protocol header, then a valid Connection.Start) because server rmq1 is on port 5672; to check a port that serves HTTP, write type = "http" and check_port in the converted TOML`,
				"w.cfg:8: ignored: http-check expect (the check of this AMQP backend is an AMQP probe)",
				`w.cfg:10: backend "rabbitmq": server "rmq2" has inter 2s but server "rmq1" (line 9) has 5s; amqplb has one value per backend and takes the first server's`,
				`w.cfg:10: backend "rabbitmq": server "rmq2" has fall 5 but server "rmq1" (line 9) has none; amqplb has one value per backend and takes the first server's`,
				`w.cfg:10: backend "rabbitmq": server "rmq2" has slowstart 10s but server "rmq1" (line 9) has none; amqplb has one value per backend and takes the first server's`,
				`w.cfg:11: backend "rabbitmq": server "rmq3" has no check, but amqplb checks every server of a backend whose other servers are checked`,
				`w.cfg:11: backend "rabbitmq": server "rmq3" is disabled: it starts with weight 0 (amqplb has no maintenance at start; give it a weight over the admin API)`,
			},
		},
		{
			name: "no checks, one server",
			src:  "listen rabbitmq\n\tbind :5672\n\tserver rmq1 10.0.0.1:5672\n",
			want: []string{
				`w.cfg:1: backend "rabbitmq": health_check: type "none": servers are never checked, so a dead broker stays in rotation`,
				`w.cfg:1: backend "rabbitmq" has only one server; there is nothing to fail over to`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseHAProxy("w.cfg", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Warnings, tt.want) {
				t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestHAProxyConvert checks what amqplb convert relies on: the TOML that
// ToTOML writes for an imported file reads back to the same Config.
func TestHAProxyConvert(t *testing.T) {
	src := map[string]string{
		"rabbitmq": rabbitmqCfg,
		"frontend/backend": `defaults
	timeout tunnel 1h
frontend amqp
	bind :5672,:5673
	bind 127.0.0.1:5674 ssl crt /etc/ssl/amqp.pem
	default_backend rabbitmq
backend rabbitmq
	balance source
	option tcp-check
	default-server check inter 1s send-proxy on-marked-down shutdown-sessions
	server rmq1 10.0.0.1:5672 weight 0
	server rmq2 10.0.0.2:5672 backup maxconn 10
`,
	}
	for name, s := range src {
		t.Run(name, func(t *testing.T) {
			want, _, err := parseHAProxy("a.cfg", []byte(s))
			if err != nil {
				t.Fatal(err)
			}
			out := config.ToTOML(want)
			got, err := config.Parse("a.cfg", out)
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

// global stats socket: the first UNIX one becomes [admin] socket*, others are warned about, a
// bad mode is an error on its line.
func TestHAProxyStatsSocket(t *testing.T) {
	const rest = "defaults\n    mode tcp\nlisten rabbitmq\n    bind 127.0.0.1:5672\n    server rmq1 127.0.0.2:5672\n"
	cfg, _, err := parseHAProxy("h.cfg", []byte("global\n    stats socket unix@/run/a.sock uid 0 gid 0 level user\n"+
		"    stats socket /run/b.sock\n    stats socket abns@x\n"+rest))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Admin{Listen: "127.0.0.1:8404", VHostLabels: 100, Socket: "/run/a.sock", SocketUser: "0", SocketGroup: "0", SocketLevel: "user"}
	if cfg.Admin != want {
		t.Errorf("admin = %+v, want %+v", cfg.Admin, want)
	}
	warnings := strings.Join(cfg.Warnings, "\n")
	for _, w := range []string{"h.cfg:3: ignored: stats socket /run/b.sock (amqplb serves one runtime socket: /run/a.sock, line 2)",
		"h.cfg:4: ignored: stats socket abns@x (amqplb serves the runtime API on a UNIX socket path only)"} {
		if !strings.Contains(warnings, w) {
			t.Errorf("warnings lack %q:\n%s", w, warnings)
		}
	}
	_, _, err = parseHAProxy("h.cfg", []byte("global\n    stats socket /run/a.sock mode rw level admin\n"+rest))
	if err == nil || err.Error() != `h.cfg:2: stats socket: mode: "rw" is not a file mode (octal permission bits such as 660)` {
		t.Errorf("bad mode: %v", err)
	}
}

// stats admin if TRUE turns on the stats page's buttons; another condition leaves it read-only.
func TestHAProxyStatsAdmin(t *testing.T) {
	const src = "listen rabbitmq\n    bind 127.0.0.1:5672\n    mode tcp\n    server rmq1 127.0.0.2:5672\n" +
		"listen stats\n    bind 127.0.0.1:8405\n    mode http\n    stats enable\n    stats auth ops:pw\n    stats admin if %s\n"
	cfg, _, err := parseHAProxy("h.cfg", []byte(fmt.Sprintf(src, "TRUE")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Stats) != 1 || !cfg.Stats[0].Admin {
		t.Errorf("stats admin if TRUE: %+v, want admin", cfg.Stats)
	}
	cfg, _, err = parseHAProxy("h.cfg", []byte(fmt.Sprintf(src, "LOCALHOST")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stats[0].Admin || !strings.Contains(strings.Join(cfg.Warnings, "\n"), "h.cfg:10: ignored: stats admin if LOCALHOST (") {
		t.Errorf("stats admin if LOCALHOST: admin %v, warnings %q", cfg.Stats[0].Admin, cfg.Warnings)
	}
}

// Numbers and times are read as HAProxy 2.6 reads them: the leading number, with a warning on
// the line about what follows it. Without a leading number it is still an error.
func TestHAProxyLenientNumbers(t *testing.T) {
	src := "global\n    maxconn 10000`\n" +
		"defaults\n    mode tcp\n    timeout connect 5sx\n    timeout client 3h`\n    timeout server 3h\n" +
		"listen rabbitmq\n    bind 127.0.0.1:5672 maxconn 10x\n    retries 3x\n" +
		"    server rmq1 127.0.0.2:5672 check inter 2sx rise 2x fall 3; weight 10x maxconn 5x port 5673x\n"
	c, _, err := parseHAProxy("h.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	b, s := c.Backends[0], c.Backends[0].Servers[0]
	if c.Global.MaxConnections != 10000 || c.Frontends[0].MaxConnections != 10 || b.Retries != 3 || b.ConnectTimeout != 5*time.Second ||
		b.IdleTimeout != 3*time.Hour || b.HealthCheck.Interval != 2*time.Second || b.HealthCheck.Rise != 2 || b.HealthCheck.Fall != 3 ||
		s.Weight != 10 || s.MaxConnections != 5 || s.CheckPort != 5673 {
		t.Errorf("values: global maxconn %d, bind maxconn %d, retries %d, connect %v, idle %v, inter %v, rise %d, fall %d, weight %d, maxconn %d, port %d",
			c.Global.MaxConnections, c.Frontends[0].MaxConnections, b.Retries, b.ConnectTimeout, b.IdleTimeout, b.HealthCheck.Interval,
			b.HealthCheck.Rise, b.HealthCheck.Fall, s.Weight, s.MaxConnections, s.CheckPort)
	}
	warnings := strings.Join(c.Warnings, "\n")
	for _, w := range []string{
		"h.cfg:2: maxconn 10000`: read as 10000, as HAProxy 2.6 reads it (it ignores \"`\" after the number)",
		`h.cfg:5: timeout connect 5sx: read as 5s, as HAProxy 2.6 reads it (it ignores "x" after the time, and says a later version will refuse it)`,
		"h.cfg:6: timeout client 3h`: read as 3h,",
		`h.cfg:9: bind option maxconn 10x: read as 10`,
		`h.cfg:10: retries 3x: read as 3`,
		`h.cfg:11: server option inter 2sx: read as 2s`,
		`h.cfg:11: server option rise 2x: read as 2`,
		`h.cfg:11: server option fall 3;: read as 3`,
		`h.cfg:11: server option weight 10x: read as 10`,
		`h.cfg:11: server option port 5673x: read as 5673`,
	} {
		if !strings.Contains(warnings, w) {
			t.Errorf("no warning %q in:\n%s", w, warnings)
		}
	}
	for _, bad := range []string{"    maxconn abc\n", "    maxconn -5x\n"} {
		if _, _, err := parseHAProxy("h.cfg", []byte("global\n"+bad+"listen r\n    bind :5672\n    server a 127.0.0.2:5672\n")); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// send-proxy is per server in HAProxy: the backend takes the first server's, and a server that
// differs gets its own send_proxy ("none" for no header); its checks follow it.
func TestHAProxyPerServerSendProxy(t *testing.T) {
	cfg, _, err := parseHAProxy("h.cfg", []byte(`listen rabbitmq
	bind 127.0.0.1:5672
	server rmq1 127.0.0.2:5672 check send-proxy-v2
	server rmq2 127.0.0.3:5672 check send-proxy
	server rmq3 127.0.0.4:5672 check
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Backends[0]
	if b.SendProxy != "v2" {
		t.Errorf("backend send_proxy %q, want v2", b.SendProxy)
	}
	for i, want := range []struct{ own, eff string }{{"", "v2"}, {"v1", "v1"}, {"none", ""}} {
		s := b.Servers[i]
		if s.SendProxy != want.own || b.ServerSendProxy(s) != want.eff || s.CheckSendProxy != (want.eff != "") {
			t.Errorf("server %s: send_proxy %q (effective %q), check_send_proxy %v; want %q, %q",
				s.Name, s.SendProxy, b.ServerSendProxy(s), s.CheckSendProxy, want.own, want.eff)
		}
	}
	toml := string(config.ToTOML(cfg))
	for _, line := range []string{`send_proxy = "v1"`, `send_proxy = "none"`} {
		if !strings.Contains(toml, line) {
			t.Errorf("TOML lacks %s:\n%s", line, toml)
		}
	}
}

// tcp-request content rules in a backend section become the backend's rules, with the ACLs
// they use.
func TestHAProxyBackendRules(t *testing.T) {
	cfg, _, err := parseHAProxy("h.cfg", []byte(`frontend amqp
	bind 127.0.0.1:5672
	default_backend rabbitmq
backend rabbitmq
	acl internal_networks src 10.0.0.0/8 192.168.0.0/16
	tcp-request content reject if ! internal_networks
	server rmq1 127.0.0.2:5672 check
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Backends[0]
	want := []config.BackendRule{{Action: "reject", If: "!internal_networks"}}
	if !slices.Equal(b.TCPRequest, want) || len(b.ACL["internal_networks"]) != 2 || len(cfg.Frontends[0].TCPRequest) != 0 {
		t.Errorf("backend rules %+v, acl %v; frontend rules %+v", b.TCPRequest, b.ACL, cfg.Frontends[0].TCPRequest)
	}
	toml := string(config.ToTOML(cfg))
	back, err := config.Parse("h.toml", []byte(toml))
	if err != nil {
		t.Fatalf("the converted TOML does not load: %v\n%s", err, toml)
	}
	if !slices.Equal(back.Backends[0].TCPRequest, want) {
		t.Errorf("round trip: %+v\n%s", back.Backends[0].TCPRequest, toml)
	}
}

// use_backend on the ClientHello's server name becomes the frontend's routes; other content
// switching is still refused.
func TestHAProxySNIRoutes(t *testing.T) {
	src := func(use string) []byte {
		return []byte("frontend f\n\tbind 127.0.0.1:5671\n\tmode tcp\n\ttcp-request inspect-delay 3s\n" +
			"\tacl two req_ssl_sni -m beg two.\n" + use + "\tdefault_backend a\nbackend a\n\tserver a 127.0.0.2:5671\nbackend b\n\tserver b 127.0.0.3:5671\n")
	}
	cfg, _, err := parseHAProxy("h.cfg", src("\tuse_backend b if { req.ssl_sni -i B.example } || two or { req_ssl_sni -m end .b.internal }\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Frontends[0]
	want := []config.Route{{SNI: []string{"B.example"}, SNIPrefix: []string{"two."}, SNISuffix: []string{".b.internal"}, Backend: "b"}}
	if len(f.Routes) != 1 || !slices.Equal(f.Routes[0].SNI, want[0].SNI) || !slices.Equal(f.Routes[0].SNIPrefix, want[0].SNIPrefix) ||
		!slices.Equal(f.Routes[0].SNISuffix, want[0].SNISuffix) || f.Routes[0].Backend != "b" || f.InspectDelay != 3*time.Second || f.Mode != "tcp" {
		t.Errorf("routes %+v, inspect_delay %v, mode %s; want %+v, 3s, tcp", f.Routes, f.InspectDelay, f.Mode, want)
	}
	for use, msg := range map[string]string{
		"\tuse_backend b unless { req_ssl_sni -i x }\n":                "content switching is not supported, except on the TLS server name",
		"\tuse_backend b if { req_ssl_sni -m reg x.* }\n":              "only -m str, end and beg are supported",
		"\tuse_backend b if { req_ssl_sni -i x } { src 10.0.0.0/8 }\n": "content switching is not supported",
	} {
		if _, _, err := parseHAProxy("h.cfg", src(use)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want an error with %q", use, err, msg)
		}
	}
}
