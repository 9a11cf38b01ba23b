package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// [[backend.server_template]]: defaults, written keys, FILE:LINE errors, name clashes with
// servers and other templates, no "no servers" warning, and a ToTOML round trip.
func TestServerTemplate(t *testing.T) {
	const base = "[[frontend]]\nname = \"amqp\"\nbind = \":5672\"\nbackend = \"rabbitmq\"\n\n[[backend]]\nname = \"rabbitmq\"\n"
	def := DefaultServerTemplate()
	for _, tt := range []struct {
		name, tables string
		want         []ServerTemplate
		err          string
	}{
		{name: "defaults", tables: "[[backend.server_template]]\nprefix = \"rabbit\"\ncount = 3\naddress = \"rabbitmq:5672\"\n",
			want: []ServerTemplate{{Prefix: "rabbit", Count: 3, Address: "rabbitmq:5672", ResolveInterval: 10 * time.Second, ResolveTimeout: time.Second, Weight: 1}}},
		{name: "written", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 2\naddress = \"rabbitmq:5672\"\nresolve_interval = \"2s\"\nresolve_timeout = \"500ms\"\nnameservers = [\"127.0.0.11:53\"]\nweight = 5\nbackup = true\nmax_connections = 10\ncheck_port = 5673\n",
			want: []ServerTemplate{{Prefix: "r", Count: 2, Address: "rabbitmq:5672", ResolveInterval: 2 * time.Second, ResolveTimeout: 500 * time.Millisecond,
				Nameservers: []string{"127.0.0.11:53"}, Weight: 5, Backup: true, MaxConnections: 10, CheckPort: 5673}}},
		{name: "no prefix", tables: "[[backend.server_template]]\ncount = 3\naddress = \"rabbitmq:5672\"\n", err: "a.toml:9: backend \"rabbitmq\": server_template #1: prefix is required"},
		{name: "no count", tables: "[[backend.server_template]]\nprefix = \"r\"\naddress = \"rabbitmq:5672\"\n", err: "a.toml:9: backend \"rabbitmq\": server_template \"r\": count is required"},
		{name: "zero count", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 0\naddress = \"rabbitmq:5672\"\n", err: "a.toml:11: backend \"rabbitmq\": server_template \"r\": count 0 out of range 1..1024"},
		{name: "no address", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 1\n", err: "a.toml:9: backend \"rabbitmq\": server_template \"r\": address is required"},
		{name: "no port", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 1\naddress = \"rabbitmq\"\n", err: "a.toml:12: backend \"rabbitmq\": server_template \"r\": address \"rabbitmq\" is not host:port"},
		{name: "interval", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 1\naddress = \"rabbitmq:5672\"\nresolve_interval = \"0s\"\n", err: "a.toml:13: backend \"rabbitmq\": server_template \"r\": resolve_interval must be greater than 0"},
		{name: "nameserver", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 1\naddress = \"rabbitmq:5672\"\nnameservers = [\"dns\"]\n", err: "a.toml:13: backend \"rabbitmq\": server_template \"r\": nameserver \"dns\" must be ip:port"},
		{name: "server clash", tables: "[[backend.server_template]]\nprefix = \"rabbit\"\ncount = 3\naddress = \"rabbitmq:5672\"\n\n[[backend.server]]\nname = \"rabbit2\"\naddress = \"10.0.0.1:5672\"\n",
			err: "a.toml:15: backend \"rabbitmq\": server \"rabbit2\" has the name of a slot of server_template \"rabbit\" (first defined at line 10)"},
		{name: "template clash", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 3\naddress = \"a:5672\"\n\n[[backend.server_template]]\nprefix = \"r\"\ncount = 1\naddress = \"b:5672\"\n",
			err: "a.toml:15: backend \"rabbitmq\": server_template \"r\": slot \"r1\" is also one of server_template \"r\" (first defined at line 10)"},
		{name: "unknown key", tables: "[[backend.server_template]]\nprefix = \"r\"\ncount = 1\naddress = \"a:5672\"\nresolvers = \"x\"\n", err: "unknown key backend.server_template.resolvers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := base + "\n" + tt.tables
			c, err := Parse("a.toml", []byte(src))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q\n%s", err, tt.err, src)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			eq := func(a, b ServerTemplate) bool {
				return slices.Equal(a.Nameservers, b.Nameservers) && func() bool { a.Nameservers, b.Nameservers = nil, nil; return true }() && a.Prefix == b.Prefix &&
					a.Count == b.Count && a.Address == b.Address && a.ResolveInterval == b.ResolveInterval && a.ResolveTimeout == b.ResolveTimeout &&
					a.Weight == b.Weight && a.Backup == b.Backup && a.MaxConnections == b.MaxConnections && a.CheckPort == b.CheckPort
			}
			if got := c.Backends[0].ServerTemplates; !slices.EqualFunc(got, tt.want, eq) {
				t.Fatalf("templates = %+v, want %+v", got, tt.want)
			}
			for _, w := range c.Warnings {
				if strings.Contains(w, "no servers") {
					t.Errorf("warned: %s", w)
				}
			}
			out := ToTOML(c)
			back, err := Parse("b.toml", out)
			if err != nil {
				t.Fatalf("ToTOML output does not parse: %v\n%s", err, out)
			}
			if got := back.Backends[0].ServerTemplates; !slices.EqualFunc(got, tt.want, eq) {
				t.Errorf("round trip gives %+v, want %+v\n%s", got, tt.want, out)
			}
		})
	}
	if def.ResolveInterval != DefaultResolveInterval || def.Weight != DefaultWeight {
		t.Errorf("DefaultServerTemplate() = %+v", def)
	}
	s := ServerTemplate{Prefix: "rabbit", Weight: 3, CheckPort: 0}.Server(Backend{SendProxy: "v2"}, 2, "10.0.0.2:5672")
	if s.Name != "rabbit2" || s.Address != "10.0.0.2:5672" || s.Weight != 3 || !s.CheckSendProxy {
		t.Errorf("Server() = %+v", s)
	}
}

// A Config built in code (no lines) with a template validates: count is "written" when set.
func TestServerTemplateInCode(t *testing.T) {
	c := DefaultConfig()
	c.Frontends = []Frontend{{Name: "amqp", Bind: "127.0.0.1:5672", Backend: "rabbitmq", Mode: DefaultMode}}
	b := DefaultBackend()
	b.Name = "rabbitmq"
	st := DefaultServerTemplate()
	st.Prefix, st.Count, st.Address = "rabbit", 3, "rabbitmq:5672"
	b.ServerTemplates = []ServerTemplate{st}
	c.Backends = []Backend{b}
	if errs, _ := Validate(c, nil, nil); len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	c.Backends[0].ServerTemplates[0].Count = 0
	if errs, _ := Validate(c, nil, nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), "count is required") {
		t.Fatalf("count 0: %v", errs)
	}
}
