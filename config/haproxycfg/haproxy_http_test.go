package haproxycfg

import (
	"reflect"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/config"
)

// mgmtListen is a management UI section in mode http, with the HTTP
// directives RabbitMQ guides show; the test appends its check lines.
const mgmtListen = `listen mgmt
	bind :15672
	mode http
	option forwardfor
	option httplog
	cookie SERVERID insert indirect nocache
	http-request set-header X-Forwarded-Proto https
	timeout http-request 10s
	server r1 10.0.0.1:15672 check cookie r1
	server r2 10.0.0.2:15672 check cookie r2
`

// TestHAProxyModeHTTP checks that a mode http section becomes a tcp
// frontend and a backend with an http check, and that each HTTP directive
// is warned about on its line.
func TestHAProxyModeHTTP(t *testing.T) {
	src := mgmtListen + `	balance uri whole
	option httpchk GET /api/aliveness-test/%2F
	http-check send hdr Authorization "Basic Z3Vlc3Q6Z3Vlc3Q=" hdr Host rabbit.local
	http-check expect ! rstatus ^5
`
	c, _, err := parseHAProxy("m.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Frontends[0]; f.Mode != "tcp" || f.Bind != ":15672" || f.Backend != "mgmt" {
		t.Errorf("frontend %+v", f)
	}
	h := c.Backends[0].HealthCheck
	want := &config.HTTPCheck{Method: "GET", Path: "/api/aliveness-test/%2F", Host: "rabbit.local",
		Headers: map[string]string{"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}, Match: "rstatus", Pattern: "^5", Negate: true}
	if h.Type != "http" || !reflect.DeepEqual(h.HTTP, want) {
		t.Errorf("health check %s %+v, want http %+v", h.Type, h.HTTP, want)
	}
	wantWarnings := []string{
		`m.cfg:3: listen mgmt: mode http is served as mode "tcp": amqplb relays the connections to the servers as they come, reading no HTTP (no header is added or rewritten, no request is routed, logged or refused on its content)`,
		"m.cfg:4: ignored: option forwardfor (no X-Forwarded-For: amqplb passes TCP; the PROXY protocol (send-proxy) carries the client's address to servers that accept it, which RabbitMQ's management listener does not)",
		"m.cfg:5: ignored: option httplog (amqplb logs one line per TCP connection, not one per HTTP request)",
		"m.cfg:6: ignored: cookie (no cookie persistence: use balance source for sticky clients)",
		"m.cfg:7: ignored: http-request set-header (amqplb reads no requests: they reach the servers unchanged, and a deny, auth or redirect rule here is not enforced)",
		"m.cfg:8: ignored: timeout http-request (amqplb reads no requests: a slow client is bounded only by idle_timeout)",
		"m.cfg:9: ignored: server option cookie (no cookie persistence: use balance source for sticky clients)",
		"m.cfg:10: ignored: server option cookie (no cookie persistence: use balance source for sticky clients)",
		"m.cfg:11: balance uri is imported as roundrobin (amqplb reads no requests to hash)",
	}
	if !reflect.DeepEqual(c.Warnings, wantWarnings) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	// The converted TOML reads back to the same configuration.
	got, err := config.Parse("m.cfg", config.ToTOML(c))
	if err != nil {
		t.Fatal(err)
	}
	got.Warnings, c.Warnings = nil, nil
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
}

// TestHAProxyHTTPCheckForms checks the forms of option httpchk and
// http-check that become the http check.
func TestHAProxyHTTPCheckForms(t *testing.T) {
	web := "listen web\n\tbind :8080\n\tserver w1 10.0.0.1:80 check\n\tserver w2 10.0.0.2:80 check\n"
	tests := []struct {
		name     string
		src      string
		want     config.HTTPCheck
		warnings []string
	}{
		{name: "HAProxy's default request", src: web + "\toption httpchk\n",
			want: config.HTTPCheck{Method: "OPTIONS", Path: "/"}},
		{name: "URI only", src: web + "\toption httpchk /health\n",
			want: config.HTTPCheck{Method: "OPTIONS", Path: "/health"}},
		{name: "legacy headers after the version", src: web + `	option httpchk HEAD /api/aliveness-test/%2F HTTP/1.1\r\nHost:\ rabbit\r\nAuthorization:\ Basic\ Z3Vlc3Q6Z3Vlc3Q=` + "\n",
			want: config.HTTPCheck{Method: "HEAD", Path: "/api/aliveness-test/%2F", Host: "rabbit",
				Headers: map[string]string{"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}}},
		{name: "legacy HTTP/1.0", src: web + "\toption httpchk GET / HTTP/1.0\n\thttp-check expect string ok\n",
			want:     config.HTTPCheck{Method: "GET", Path: "/", Match: "string", Pattern: "ok"},
			warnings: []string{`h.cfg:5: backend "web": the http check sends HTTP/1.1 with a Host header, not HTTP/1.0`}},
		{name: "send overrides option httpchk", src: web + "\toption httpchk GET /old\n\thttp-check send meth POST uri /new ver HTTP/1.1 hdr X-A 1\n\thttp-check expect status 200-299,304\n",
			want: config.HTTPCheck{Method: "POST", Path: "/new", Headers: map[string]string{"X-A": "1"}, Match: "status", Pattern: "200-299,304"}},
		{name: "rules from defaults", src: "defaults\n\toption httpchk\n\thttp-check send meth GET uri /ping\n\thttp-check expect rstring ^pong\n" + web,
			want: config.HTTPCheck{Method: "GET", Path: "/ping", Match: "rstring", Pattern: "^pong"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseHAProxy("h.cfg", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			h := c.Backends[0].HealthCheck
			if h.Type != "http" || h.HTTP == nil || !reflect.DeepEqual(*h.HTTP, tt.want) {
				t.Errorf("health check %s %+v, want http %+v", h.Type, h.HTTP, tt.want)
			}
			if !reflect.DeepEqual(c.Warnings, tt.warnings) {
				t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(tt.warnings, "\n"))
			}
		})
	}
}

// TestHAProxyHTTPCheckConnectPort: http-check connect port N is every
// server's check_port, as tcp-check connect port is.
func TestHAProxyHTTPCheckConnectPort(t *testing.T) {
	src := "listen web\n\tbind :8080\n\toption httpchk GET /\n\thttp-check connect port 8081\n\tserver w1 10.0.0.1:80 check\n\tserver w2 10.0.0.2:80 check\n"
	c, lines, err := parseHAProxy("h.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range c.Backends[0].Servers {
		if s.CheckPort != 8081 {
			t.Errorf("server %s check_port %d, want 8081", s.Name, s.CheckPort)
		}
		if l := lines.Of("backend.0.server." + string(rune('0'+i)) + ".check_port"); l != 4 {
			t.Errorf("server %s check_port from line %d, want 4", s.Name, l)
		}
	}
}

// TestHAProxyHTTPCheckAMQP: on an AMQP backend option httpchk keeps the
// AMQP probe, and its http-check rules are warned about; without option
// httpchk, http-check rules are not used, as in HAProxy.
func TestHAProxyHTTPCheckAMQP(t *testing.T) {
	src := hapListen + "\toption httpchk GET /api/health/checks/alarms\n\thttp-check expect status 200\n" +
		"listen web\n\tbind :8080\n\thttp-check expect status 200\n\tserver w1 10.0.0.1:80 check\n\tserver w2 10.0.0.2:80 check\n"
	c, _, err := parseHAProxy("a.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Backends[0].HealthCheck; h.Type != "amqp-probe" || h.HTTP != nil {
		t.Errorf("AMQP backend's check %s %+v", h.Type, h.HTTP)
	}
	if h := c.Backends[1].HealthCheck; h.Type != "tcp" || h.HTTP != nil {
		t.Errorf("web backend's check %s %+v", h.Type, h.HTTP)
	}
	want := []string{
		`a.cfg:5: backend "rabbitmq": option httpchk: the servers serve AMQP, so the check is an AMQP probe (type "amqp-probe": the protocol header, then a valid Connection.Start) because server rmq1 is on port 5672; to check a port that serves HTTP, write type = "http" and check_port in the converted TOML`,
		"a.cfg:6: ignored: http-check expect (the check of this AMQP backend is an AMQP probe)",
		"a.cfg:9: ignored: http-check expect (http-check rules without option httpchk; HAProxy ignores them too)",
	}
	if !reflect.DeepEqual(c.Warnings, want) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(want, "\n"))
	}
}

func TestHAProxyHTTPCheckErrors(t *testing.T) {
	web := "listen web\n\tbind :8080\n\tmode http\n\tserver w1 10.0.0.1:80 check\n\tserver w2 10.0.0.2:80 check\n"
	tests := []struct {
		name, src, want string
	}{
		{"too many httpchk arguments", web + "\toption httpchk GET / HTTP/1.1 extra\n",
			`h.cfg:6: option httpchk takes at most 3 arguments (method, URI, version), not 4 (escape blanks with \)`},
		{"header without a colon", web + `	option httpchk GET / HTTP/1.0\r\nAuthorization` + "\n",
			`h.cfg:6: option httpchk: header "Authorization" is not NAME: VALUE`},
		{"second send", web + "\toption httpchk\n\thttp-check send uri /a\n\thttp-check send uri /b\n",
			`h.cfg:8: backend "web": a second http-check send is not supported (amqplb's check sends one request; first at line 7)`},
		{"second expect", web + "\toption httpchk\n\thttp-check expect status 200\n\thttp-check expect string ok\n",
			`h.cfg:8: backend "web": a second http-check expect is not supported (amqplb's check has one expect rule; first at line 7)`},
		{"expect hdr", web + "\toption httpchk\n\thttp-check expect hdr name Server value rabbit\n",
			`h.cfg:7: http-check expect hdr is not supported (status, rstatus, string and rstring are)`},
		{"uri-lf", web + "\toption httpchk\n\thttp-check send uri-lf /%[srv_name]\n",
			`h.cfg:7: http-check send uri-lf: log-format expressions are not supported; write the uri as it is`},
		{"bad regexp", web + "\toption httpchk\n\thttp-check expect rstring (\n",
			"h.cfg:7: http-check expect rstring (: error parsing regexp: missing closing ): `(`"},
		{"bad status", web + "\toption httpchk\n\thttp-check expect status 2xx\n",
			`h.cfg:7: backend "web": health_check: http: status pattern "2xx": want codes 100..599 or ranges of them, separated by commas (e.g. "200", "200-299,304")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseHAProxy("h.cfg", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}
