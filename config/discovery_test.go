package config

import (
	"strings"
	"testing"
	"time"
)

// [backend.discovery]: absent means nil, written keys keep their value and the others get the
// defaults, password_env is read (and never written back), bad values are refused with their
// line, and a backend with discovery and no [[backend.server]] is not warned about.
func TestDiscovery(t *testing.T) {
	t.Setenv("AMQPLB_TEST_DISC_PW", "s3cret")
	const base = "[[frontend]]\nname = \"amqp\"\nbind = \":5672\"\nbackend = \"rabbitmq\"\n\n[[backend]]\nname = \"rabbitmq\"\n"
	for _, tt := range []struct {
		name, table string
		want        *Discovery
		err         string
	}{
		{name: "defaults", table: "management = \"http://rabbit1:15672\"\n",
			want: &Discovery{Management: "http://rabbit1:15672", Interval: 30 * time.Second, Timeout: 5 * time.Second}},
		{name: "written", table: "management = \"https://rabbit1:15671/mgmt\"\ninterval = \"2s\"\ntimeout = \"1s\"\nuser = \"lb\"\npassword_env = \"AMQPLB_TEST_DISC_PW\"\n",
			want: &Discovery{Management: "https://rabbit1:15671/mgmt", Interval: 2 * time.Second, Timeout: time.Second,
				User: "lb", Password: "s3cret", PasswordEnv: "AMQPLB_TEST_DISC_PW"}},
		{name: "plain password", table: "management = \"http://r:15672\"\nuser = \"lb\"\npassword = \"pw\"\n",
			want: &Discovery{Management: "http://r:15672", Interval: 30 * time.Second, Timeout: 5 * time.Second, User: "lb", Password: "pw"}},
		{name: "no management", table: "interval = \"5s\"\n",
			err: "a.toml:9: backend \"rabbitmq\": discovery: management is required"},
		{name: "scheme", table: "management = \"rabbit1:15672\"\n", err: "a.toml:10: backend \"rabbitmq\": discovery: management \"rabbit1:15672\" must start with http://"},
		{name: "user info", table: "management = \"http://guest:guest@r:15672\"\n", err: "a.toml:10: backend \"rabbitmq\": discovery: management must not hold a user or password"},
		{name: "no host", table: "management = \"http://:15672\"\n", err: "has no host"},
		{name: "zero interval", table: "management = \"http://r:15672\"\ninterval = \"0s\"\n", err: "a.toml:11: backend \"rabbitmq\": discovery: interval must be greater than 0"},
		{name: "zero timeout", table: "management = \"http://r:15672\"\ntimeout = 0\n", err: "discovery: timeout must be greater than 0"},
		{name: "env unset", table: "management = \"http://r:15672\"\nuser = \"lb\"\npassword_env = \"AMQPLB_TEST_DISC_NONE\"\n",
			err: "a.toml:12: backend \"rabbitmq\": discovery: password_env \"AMQPLB_TEST_DISC_NONE\" is not set"},
		{name: "both", table: "management = \"http://r:15672\"\nuser = \"lb\"\npassword = \"x\"\npassword_env = \"AMQPLB_TEST_DISC_PW\"\n",
			err: "set password or password_env, not both"},
		{name: "password without user", table: "management = \"http://r:15672\"\npassword = \"x\"\n", err: "password or password_env needs user"},
		{name: "unknown key", table: "management = \"http://r:15672\"\nseed = \"x\"\n", err: "unknown key backend.discovery.seed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := base + "\n[backend.discovery]\n" + tt.table
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
			if got := c.Backends[0].Discovery; got == nil || *got != *tt.want {
				t.Fatalf("discovery = %+v, want %+v", got, tt.want)
			}
			for _, w := range c.Warnings {
				if strings.Contains(w, "no servers") {
					t.Errorf("warned: %s", w)
				}
			}
			out := ToTOML(c)
			if tt.want.PasswordEnv != "" && strings.Contains(string(out), "s3cret") {
				t.Errorf("ToTOML writes the password from the environment:\n%s", out)
			}
			back, err := Parse("b.toml", out)
			if err != nil {
				t.Fatalf("ToTOML output does not parse: %v\n%s", err, out)
			}
			if b := back.Backends[0].Discovery; b == nil || *b != *tt.want {
				t.Errorf("round trip gives %+v, want %+v\n%s", b, tt.want, out)
			}
		})
	}
	c, err := Parse("a.toml", []byte(base+"\n[[backend.server]]\nname = \"a\"\naddress = \"10.0.0.1:5672\"\n"))
	if err != nil || c.Backends[0].Discovery != nil {
		t.Fatalf("without the table: %+v, %v", c.Backends[0].Discovery, err)
	}
	if strings.Contains(string(ToTOML(c)), "discovery") {
		t.Error("ToTOML writes a discovery table that was not there")
	}
	if d := DefaultDiscovery(); d.Interval != DefaultDiscoveryInterval || d.Timeout != DefaultDiscoveryTimeout || d.Management != "" {
		t.Errorf("DefaultDiscovery() = %+v", d)
	}
}
