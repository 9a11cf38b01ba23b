package haproxycfg

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/config"
)

// TestHAProxyRuleLayers checks that tcp-request connection rules stay in
// their own layer, which sees the balancer in front with accept-proxy,
// and that session rules join the content layer, before its rules.
func TestHAProxyRuleLayers(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(corpusDir, "18-accept-proxy-rules.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := parseHAProxy("r.cfg", data)
	if err != nil {
		t.Fatal(err)
	}
	f := &c.Frontends[0]
	if !f.AcceptProxy {
		t.Fatal("accept_proxy not set")
	}
	wantConn := []config.TCPRule{{Layer: "connection", Action: "accept", If: "front_lb"}, {Layer: "connection", Action: "reject"}}
	wantContent := []config.TCPRule{
		{Layer: "content", Action: "reject", If: "blocked"}, // tcp-request session
		{Layer: "content", Action: "accept", If: "clients"},
		{Layer: "content", Action: "reject"},
	}
	if got := f.TCPRules(config.RuleLayerConnection); !reflect.DeepEqual(got, wantConn) {
		t.Errorf("connection rules = %+v, want %+v", got, wantConn)
	}
	if got := f.TCPRules(config.RuleLayerContent); !reflect.DeepEqual(got, wantContent) {
		t.Errorf("content rules = %+v, want %+v", got, wantContent)
	}
	if got, want := f.ACL["LOCALHOST"], []string(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("LOCALHOST defined though unused: %v", got)
	}
}

// TestHAProxyCheckTransport checks how HAProxy's server options decide
// whether checks speak TLS and send the PROXY header.
func TestHAProxyCheckTransport(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(corpusDir, "19-check-transport.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := parseHAProxy("c.cfg", data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		// ssl: port turns TLS off, check-ssl forces it, no-check-ssl
		// turns it off.
		"rabbitmq_tls/rmq1": "plain", "rabbitmq_tls/rmq2": "tls", "rabbitmq_tls/rmq3": "plain", "rabbitmq_tls/rmq4": "tls",
		// send-proxy-v2 with check-send-proxy from default-server:
		// no-check-send-proxy only undoes check-send-proxy, so the
		// header is still sent without port.
		"rabbitmq_proxy/rmq1": "proxy", "rabbitmq_proxy/rmq2": "plain", "rabbitmq_proxy/rmq3": "proxy",
		// tcp-check connect default takes the server's ssl.
		"rabbitmq_script/rmq1": "tls", "rabbitmq_script/rmq2": "tls",
	}
	for _, b := range c.Backends {
		for _, s := range b.Servers {
			got := "plain"
			switch {
			case s.CheckTLS && s.CheckSendProxy:
				got = "tls+proxy"
			case s.CheckTLS:
				got = "tls"
			case s.CheckSendProxy:
				got = "proxy"
			}
			if w := want[b.Name+"/"+s.Name]; got != w {
				t.Errorf("%s/%s checks %s, want %s", b.Name, s.Name, got, w)
			}
		}
	}

	// A tcp-check connect without default connects in plain TCP.
	src := `listen amqps
	bind :5671
	option tcp-check
	tcp-check connect
	tcp-check send-binary 414d515000000901
	tcp-check expect binary 01
	server s1 10.0.0.1:5671 ssl verify none check
	server s2 10.0.0.2:5671 ssl verify none check
`
	c, _, err = parseHAProxy("c.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Backends[0].Servers {
		if s.CheckTLS || s.CheckSendProxy {
			t.Errorf("%s: check_tls %v, check_send_proxy %v after a plain tcp-check connect", s.Name, s.CheckTLS, s.CheckSendProxy)
		}
	}
	if len(c.Warnings) == 0 || !strings.Contains(strings.Join(c.Warnings, "\n"), "c.cfg:4: backend \"amqps\": tcp-check connect without default checks in plain TCP") {
		t.Errorf("no warning about the plain connect in:\n%s", strings.Join(c.Warnings, "\n"))
	}

	// addr, like port, stops checks taking ssl.
	src = hapListen + "\tserver rmq3 10.0.0.3:5671 ssl verify none check addr 10.0.1.3\n"
	c, _, err = parseHAProxy("c.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Backends[0].Servers[2]; s.CheckTLS {
		t.Errorf("%s: check_tls with addr", s.Name)
	}
}
