package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseServerAgent(t *testing.T) {
	base := `[[frontend]]
name = "f"
bind = "127.0.0.1:5673"
backend = "b"
[[backend]]
name = "b"
[[backend.server]]
name = "r1"
address = "10.0.0.1:5672"
`
	c, err := Parse("a.toml", []byte(base+`agent = { port = 9999, send = "status\n" }
[[backend.server]]
name = "r2"
address = "10.0.0.2:5672"
agent = { port = 9998, address = "10.0.0.9", interval = "500ms" }
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Backends[0].Servers
	if a := s[0].Agent; a == nil || *a != (Agent{Port: 9999, Interval: DefaultAgentInterval, Send: "status\n"}) {
		t.Errorf("r1 agent = %+v", a)
	}
	if a := s[1].Agent; a == nil || *a != (Agent{Port: 9998, Address: "10.0.0.9", Interval: 500 * time.Millisecond}) {
		t.Errorf("r2 agent = %+v", a)
	}
	// It is written back as it was read.
	back, err := Parse("b.toml", []byte(ToTOML(c)))
	if err != nil {
		t.Fatal(err)
	}
	if *back.Backends[0].Servers[0].Agent != *s[0].Agent || *back.Backends[0].Servers[1].Agent != *s[1].Agent {
		t.Errorf("round trip changed the agents: %+v", back.Backends[0].Servers)
	}

	_, err = Parse("e.toml", []byte(base+`agent = { port = 0, interval = "0s", address = "10.0.0.9:9999", sendd = "x" }
`))
	for _, want := range []string{
		"e.toml:10:",
		`e.toml:10: backend "b": server "r1": agent: port 0 out of range 1..65535`,
		`e.toml:10: backend "b": server "r1": agent: interval must be above 0`,
		`e.toml:10: backend "b": server "r1": agent: address "10.0.0.9:9999" must be a host alone`,
		"sendd",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %s", err, want)
		}
	}
}
