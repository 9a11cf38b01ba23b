package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/internal/testenv"
)

// echoOn listens on ip:port (port 0: any), echoes, and counts the connections it accepted.
func echoOn(t *testing.T, ip string, port int) (int, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		if runtime.GOOS == "linux" { // all of 127.0.0.0/8 is local there
			t.Fatalf("listen on %s: %v", ip, err)
		}
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port, &n
}

// A running amqplb with a [[backend.server_template]] serves the addresses the name resolves to
// (the test's DNS server, as nameservers), in stable slots: servers appear and disappear
// without a reload as the records change, a slot keeps its address, connections go through a
// resolved server, and a reload keeps the resolved servers.
func TestServerTemplateFollowsDNS(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, baseline) })
	port, hits2 := echoOn(t, "127.0.0.2", 0)
	_, hits3 := echoOn(t, "127.0.0.3", port)
	dns := testenv.StartDNS(t)
	const name = "rabbitmq.amqplb.test."
	ip2, ip3 := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	dns.Set(name) // exists, no address yet: init-addr none

	makeCfg := func() *config.Config {
		cfg := config.DefaultConfig()
		cfg.File = "test.toml"
		cfg.Global.DrainTimeout = time.Second
		cfg.Global.AccessLog = false
		cfg.Admin.Listen = "127.0.0.1:0"
		cfg.Frontends = []config.Frontend{{Name: "amqp", Bind: "127.0.0.1:0", Backend: "rabbitmq", Mode: "tcp"}}
		b := config.DefaultBackend()
		b.Name = "rabbitmq"
		b.HealthCheck.Type = "none"
		st := config.DefaultServerTemplate()
		st.Prefix, st.Count, st.Address = "rabbit", 2, net.JoinHostPort(name, strconv.Itoa(port))
		st.ResolveInterval, st.Nameservers = 20*time.Millisecond, []string{dns.Addr()}
		b.ServerTemplates = []config.ServerTemplate{st}
		cfg.Backends = []config.Backend{b}
		return cfg
	}
	a, err := newApp(makeCfg(), slog.New(slog.DiscardHandler), func(string) (*config.Config, error) { return makeCfg(), nil })
	if err != nil {
		t.Fatal(err)
	}
	h, addr := a.admin.Handler(), a.frontends[0].Addr().String() // before run, which sets them
	hup := runApp(t, a)
	servers := func() []string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/backends/rabbitmq", nil))
		var bj admin.BackendJSON
		if err := json.Unmarshal(rec.Body.Bytes(), &bj); err != nil {
			t.Fatalf("GET /api/v1/backends/rabbitmq: %v: %s", err, rec.Body)
		}
		var out []string
		for _, s := range bj.Servers {
			out = append(out, s.Name+"="+s.Address)
		}
		return out
	}
	p := strconv.Itoa(port)
	waitServers := func(want ...string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error {
			if got := servers(); !slices.Equal(got, want) {
				return fmt.Errorf("servers %v, want %v", got, want)
			}
			return nil
		})
	}
	session := func() {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echo(t, c, "ping")
	}
	if got := servers(); len(got) != 0 {
		t.Fatalf("servers at start %v, want none", got)
	}
	dns.Set(name, ip3)
	waitServers("rabbit1=127.0.0.3:" + p)
	session()
	if hits3.Load() != 1 {
		t.Fatalf("127.0.0.3 accepted %d", hits3.Load())
	}
	dns.Set(name, ip2, ip3) // 127.0.0.3 keeps rabbit1
	waitServers("rabbit1=127.0.0.3:"+p, "rabbit2=127.0.0.2:"+p)
	dns.Set(name, ip2) // rabbit1 goes, rabbit2 stays
	waitServers("rabbit2=127.0.0.2:" + p)
	session()
	if hits2.Load() != 1 || hits3.Load() != 1 {
		t.Fatalf("accepted: 127.0.0.2 %d, 127.0.0.3 %d", hits2.Load(), hits3.Load())
	}
	hup <- syscall.SIGHUP
	dns.Set(name, ip2, ip3)
	waitServers("rabbit1=127.0.0.3:"+p, "rabbit2=127.0.0.2:"+p)
	dns.Delete(name) // NXDOMAIN: no servers
	waitServers()
}
