package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// TestServerTemplateFollowsDNS runs a haproxy.cfg with server-template and a resolvers section
// whose nameserver is a DNS server of the test, in front of the real cluster's first node
// (a template has one port: the name resolves to 127.0.0.1, where that node listens). With
// init-addr none amqplb starts with no server; the record appearing makes rabbit1 a server that
// carries AMQP connections; a second record adds rabbit2 while rabbit1 keeps its counters; the
// records going away remove both, and coming back restores rabbit1: all without a reload.
func TestServerTemplateFollowsDNS(t *testing.T) {
	c := testenv.RequireCluster(t)
	node := c.Nodes[0]
	dns := testenv.StartDNS(t)
	const name = "rabbitmq.amqplb.test"
	dns.Set(name) // exists, no address yet
	addr := testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`resolvers test
    nameserver local %s
    hold valid 200ms
    timeout retry 500ms
    resolve_retries 2

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s

frontend amqp
    bind %s
    default_backend rabbitmq

backend rabbitmq
    server-template rabbit 2 %s:%d check inter 200ms fastinter 100ms rise 1 fall 1 resolvers test init-addr none
`, dns.Addr(), addr, name, node.AMQPPort)
	l := startLBFile(t, "haproxy.cfg", cfg, addr)
	l.waitServerNames(t, 5*time.Second) // none
	if err := connectOnce(l.url()); err == nil {
		t.Fatal("a connection went through with no server")
	}

	local := netip.MustParseAddr("127.0.0.1")
	dns.Set(name, local)
	l.waitServerNames(t, 10*time.Second, "rabbit1")
	if s := l.backendList(t)[0]; s.Address != node.AMQPAddr() {
		t.Fatalf("rabbit1 at %s, want %s", s.Address, node.AMQPAddr())
	}
	l.waitEligible(t, "rabbit1", 15*time.Second)
	for i := range 3 {
		if err := connectOnce(l.url()); err != nil {
			t.Fatalf("connect %d through rabbit1: %v", i, err)
		}
	}
	if n := l.servers(t)["rabbit1"].TotalConnections; n < 3 {
		t.Fatalf("rabbit1 carried %d connections, want 3", n)
	}

	// A second record: rabbit2 appears; rabbit1 keeps its address, state and counters.
	dns.Set(name, netip.MustParseAddr("127.0.0.2"), local)
	l.waitServerNames(t, 10*time.Second, "rabbit1", "rabbit2")
	if s := l.servers(t)["rabbit1"]; s.Address != node.AMQPAddr() || s.TotalConnections < 3 || s.State != "up" {
		t.Fatalf("rabbit1 after re-resolution: %+v", s)
	}
	if s := l.servers(t)["rabbit2"]; !strings.HasPrefix(s.Address, "127.0.0.2:") {
		t.Fatalf("rabbit2 at %s", s.Address)
	}

	// The records go: no server. They come back: rabbit1 again, serving.
	dns.Set(name)
	l.waitServerNames(t, 10*time.Second)
	dns.Set(name, local)
	l.waitServerNames(t, 10*time.Second, "rabbit1")
	l.waitEligible(t, "rabbit1", 15*time.Second)
	if err := connectOnce(l.url()); err != nil {
		t.Fatalf("connect after the record came back: %v", err)
	}
	if log := l.log.String(); strings.Contains(log, "reloading") || !strings.Contains(log, "servers changed") {
		t.Errorf("want changes applied without a reload:\n%s", log)
	}
}
