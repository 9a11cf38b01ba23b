package haproxycfg

import (
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/config"
)

func TestHAProxyAgentCheck(t *testing.T) {
	src := `defaults
	mode tcp
	default-server agent-inter 4s

listen a
	bind :5672
	server rmq1 h1:5672 check agent-check agent-port 9999
	server rmq2 h2:5672 check agent-check agent-port 9998 agent-addr 10.0.0.9 agent-inter 1s agent-send "ping\n"
	server rmq3 h3:5672 check agent-port 9999
`
	c, _, err := parseHAProxy("a.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Backends[0].Servers
	want := []*config.Agent{
		{Port: 9999, Interval: 4 * time.Second},
		{Port: 9998, Address: "10.0.0.9", Interval: time.Second, Send: "ping\n"},
		nil,
	}
	for i, w := range want {
		got := s[i].Agent
		if (got == nil) != (w == nil) || got != nil && *got != *w {
			t.Errorf("server %s agent = %+v, want %+v", s[i].Name, got, w)
		}
	}
	if !strings.Contains(strings.Join(c.Warnings, "\n"), `a.cfg:9: backend "a": server "rmq3": agent options without agent-check are not used`) {
		t.Errorf("Warnings = %q", c.Warnings)
	}

	for _, tc := range []struct{ line, err string }{
		{"server rmq1 h1:5672 agent-check", `a.cfg:4: backend "a": server "rmq1": agent-check needs agent-port`},
		{"server rmq1 h1:5672 agent-check agent-port 0", "a.cfg:4: server option agent-port 0: a port number in 1..65535"},
		{"server rmq1 h1:5672 agent-check agent-port 1 agent-inter x", "a.cfg:4:"},
	} {
		_, _, err := parseHAProxy("a.cfg", []byte("defaults\n\tmode tcp\nlisten a\n\t"+tc.line+"\n\tbind :5672\n"))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %s", tc.line, err, tc.err)
		}
	}
}
