package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseRuleLayers checks tcp_request's layer: its default, its values,
// and TCPRules, which splits the rules by layer in order.
func TestParseRuleLayers(t *testing.T) {
	src := strings.Replace(minimal, `backend = "rabbitmq"`, `backend = "rabbitmq"
accept_proxy = true
acl = { lb = ["10.0.0.1"], lan = ["192.168.0.0/16"] }
tcp_request = [
  { action = "accept", if = "lb" },
  { layer = "content", action = "accept", if = "lan" },
  { layer = "connection", action = "reject" },
  { layer = "content", action = "reject" },
]`, 1)
	c, err := Parse("l.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f := &c.Frontends[0]
	wantConn := []TCPRule{{Layer: "connection", Action: "accept", If: "lb"}, {Layer: "connection", Action: "reject"}}
	wantContent := []TCPRule{{Layer: "content", Action: "accept", If: "lan"}, {Layer: "content", Action: "reject"}}
	if got := f.TCPRules(RuleLayerConnection); !reflect.DeepEqual(got, wantConn) {
		t.Errorf("connection rules = %+v, want %+v", got, wantConn)
	}
	if got := f.TCPRules(RuleLayerContent); !reflect.DeepEqual(got, wantContent) {
		t.Errorf("content rules = %+v, want %+v", got, wantContent)
	}
	// A rule built in code without a layer is a connection rule.
	code := Frontend{TCPRequest: []TCPRule{{Action: "reject"}, {Layer: "content", Action: "accept"}}}
	if got := code.TCPRules(RuleLayerConnection); len(got) != 1 || got[0].Action != "reject" {
		t.Errorf("TCPRules of a rule without a layer = %+v", got)
	}

	bad := strings.Replace(minimal, `backend = "rabbitmq"`, `backend = "rabbitmq"
tcp_request = [
  { action = "accept" },
  { layer = "session", action = "reject" },
]`, 1)
	_, err = Parse("l.toml", []byte(bad))
	want := `l.toml:8: frontend "amqp": tcp_request #2: layer "session" is not one of "connection", "content"`
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
}

// TestParseCheckTransport checks the defaults of check_tls and
// check_send_proxy (the traffic's, unless check_port is set) and their
// validation.
func TestParseCheckTransport(t *testing.T) {
	src := `
[[frontend]]
name = "amqp"
bind = ":5672"
backend = "proxied"

[[frontend]]
name = "plain"
bind = ":5673"
backend = "plain"

[[backend]]
name = "proxied"
send_proxy = "v1"

[[backend.server]]
name = "same-port"
address = "10.0.0.1:5671"
tls = {}

[[backend.server]]
name = "other-port"
address = "10.0.0.2:5671"
check_port = 15672
tls = {}

[[backend.server]]
name = "forced"
address = "10.0.0.3:5671"
check_port = 15672
tls = {}
check_tls = true
check_send_proxy = true

[[backend.server]]
name = "off"
address = "10.0.0.4:5671"
tls = {}
check_tls = false
check_send_proxy = false

[[backend]]
name = "plain"

[[backend.server]]
name = "a"
address = "10.0.0.5:5672"

[[backend.server]]
name = "b"
address = "10.0.0.6:5672"
`
	c, err := Parse("c.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	type both struct{ tls, proxy bool }
	want := []both{{true, true}, {false, false}, {true, true}, {false, false}, {false, false}, {false, false}}
	var got []both
	for _, b := range c.Backends {
		for _, s := range b.Servers {
			got = append(got, both{s.CheckTLS, s.CheckSendProxy})
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("check_tls, check_send_proxy = %v, want %v", got, want)
	}
	// ToTOML writes them, so the round trip holds.
	back, err := Parse("c.toml", ToTOML(c))
	if err != nil {
		t.Fatal(err)
	}
	back.Warnings, c.Warnings = nil, nil
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}

	bad := strings.Replace(src, `name = "a"
address = "10.0.0.5:5672"`, `name = "a"
address = "10.0.0.5:5672"
check_tls = true
check_send_proxy = true`, 1)
	_, err = Parse("c.toml", []byte(bad))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse = %v, want errors", err)
	}
	wantErr := `c.toml:48: backend "plain": server "a": check_tls needs tls (checks speak TLS with the server's tls settings)
c.toml:49: backend "plain": server "a": check_send_proxy needs a send_proxy, the server's or the backend's (the PROXY header's version)`
	if err.Error() != wantErr {
		t.Errorf("errors:\n%v\nwant:\n%s", err, wantErr)
	}
}
