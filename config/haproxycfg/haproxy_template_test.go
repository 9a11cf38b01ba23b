package haproxycfg

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// server-template with a resolvers section imports as [[backend.server_template]]: count, a
// 1-N range, the resolvers' nameservers, hold valid as resolve_interval, timeout retry ×
// resolve_retries as resolve_timeout, weight/backup/maxconn/port, and errors on the line.
func TestHAProxyServerTemplate(t *testing.T) {
	const head = "resolvers dns\n\tnameserver a 127.0.0.11:53\n\tnameserver b udp@127.0.0.12\n\thold valid 2s\n\ttimeout retry 500ms\n\tresolve_retries 4\n" +
		"frontend amqp\n\tbind :5672\n\tdefault_backend rabbitmq\nbackend rabbitmq\n"
	c, _, err := parseHAProxy("h.cfg", []byte(head+"\tserver-template rmq 1-5 rabbitmq:5672 check resolvers dns init-addr last,libc,none weight 3 backup maxconn 10 port 5673\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Backends[0]
	if len(b.Servers) != 0 || len(b.ServerTemplates) != 1 {
		t.Fatalf("servers %+v, templates %+v", b.Servers, b.ServerTemplates)
	}
	st := b.ServerTemplates[0]
	if st.Prefix != "rmq" || st.Count != 5 || st.Address != "rabbitmq:5672" || !slices.Equal(st.Nameservers, []string{"127.0.0.11:53", "127.0.0.12:53"}) ||
		st.ResolveInterval != 2*time.Second || st.ResolveTimeout != 2*time.Second || st.Weight != 3 || !st.Backup || st.MaxConnections != 10 || st.CheckPort != 5673 {
		t.Fatalf("template %+v", st)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool {
		return strings.HasPrefix(w, "h.cfg:11: ") && strings.Contains(w, "init-addr last")
	}) {
		t.Errorf("no warning about init-addr last: %q", c.Warnings)
	}

	for _, tt := range []struct{ name, src, want string }{
		{"no resolvers section", "\tserver-template rmq 3 rabbitmq:5672 resolvers docker\n", `h.cfg:11: backend "rabbitmq": server-template rmq: no resolvers section named "docker"`},
		{"range from 2", "\tserver-template rmq 2-5 rabbitmq:5672\n", `h.cfg:11: server-template rmq: range "2-5": amqplb numbers a template's servers from 1`},
		{"bad number", "\tserver-template rmq x rabbitmq:5672\n", `h.cfg:11: server-template rmq: invalid number of servers "x"`},
		{"ssl", "\tserver-template rmq 3 rabbitmq:5671 ssl verify none resolvers dns\n", "h.cfg:11: backend \"rabbitmq\": server-template rmq: ssl is not supported on a server-template"},
		{"slot clash", "\tserver-template rmq 3 rabbitmq:5672 resolvers dns\n\tserver rmq2 127.0.0.1:5672\n", `h.cfg:12: backend "rabbitmq": server "rmq2" has the name of a slot of server_template "rmq" (first defined at line 11)`},
		{"bad nameserver", "\tserver-template rmq 3 rabbitmq:5672\nresolvers other\n\tnameserver x dns.example:53\n", `h.cfg:13: nameserver x: "dns.example:53" is not an IP address`},
		{"unknown resolvers keyword", "\tserver-template rmq 3 rabbitmq:5672\nresolvers other\n\tfrob 1\n", `h.cfg:13: unknown keyword "frob" in section "resolvers other"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseHAProxy("h.cfg", []byte(head+tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
