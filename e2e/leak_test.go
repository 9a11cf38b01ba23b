package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/balancer"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/internal/testenv"
	"github.com/amqplb/amqplb/proxy"
)

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func describeFDs() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return strings.Join(out, " ")
}

// TestNoLeakAfter1000RealConnections runs the proxy in this process, in front of the real
// cluster, so its goroutines and fds can be counted.
func TestNoLeakAfter1000RealConnections(t *testing.T) {
	c := testenv.RequireCluster(t)
	b := &backend.Backend{Name: "rabbitmq"}
	for _, n := range c.Nodes {
		b.Servers = append(b.Servers, backend.NewServer(backend.ServerOptions{Name: n.Name, Address: n.AMQPAddr(), Weight: 1}))
	}
	policy, err := balancer.New("roundrobin")
	if err != nil {
		t.Fatal(err)
	}
	f := proxy.NewFrontend(proxy.FrontendOptions{
		Name: "amqp", Bind: "127.0.0.1:0", Mode: proxy.ModeAMQP,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, &proxy.Route{Backend: b, Policy: policy, Retries: 3, Redispatch: true})
	if err := f.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.Serve() }()
	url := "amqp://guest:guest@" + f.Addr().String() + "/"
	connectOnce := func() {
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
	connectOnce()
	// settle waits for the sessions to end; what is left of them is the assertion below.
	settle := func() {
		_ = testenv.Poll(10*time.Second, func() error {
			if n := f.Stats().Active; n != 0 {
				return fmt.Errorf("%d sessions active", n)
			}
			return nil
		})
	}
	settle()
	fdBase, gBase := openFDs(t), runtime.NumGoroutine()
	for range 1000 {
		connectOnce()
	}
	settle()
	var fds, gs int
	_ = testenv.Poll(10*time.Second, func() error {
		runtime.GC() // closes pipes left in the runtime's splice pool
		if fds, gs = openFDs(t), runtime.NumGoroutine(); fds > fdBase || gs > gBase {
			return errors.New("above the baseline")
		}
		return nil
	})
	if fds > fdBase || gs > gBase {
		t.Errorf("after 1000 connections: fds %d (baseline %d), goroutines %d (baseline %d); fds: %s",
			fds, fdBase, gs, gBase, describeFDs())
	}
	if got := f.Stats().Total; got != 1001 {
		t.Errorf("frontend counted %d connections, want 1001", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestSIGTERMRefusesNewConnectsAndDrains(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c), global: `drain_timeout = "2s"`})
	conn := l.dial(t)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	t0 := time.Now()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connects are refused at once, while the open session is still there, and the
	// load balancer in front of amqplb is told to stop sending traffic.
	waitLog(t, l, 1, "stopping")
	if resp, err := http.Get("http://" + l.adminAddr + "/readyz"); err != nil {
		t.Errorf("/readyz during the drain: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz during the drain = %d, want 503", resp.StatusCode)
		}
	}
	if nc, err := net.DialTimeout("tcp", l.addr, time.Second); err == nil {
		nc.Close()
		t.Error("a new connection was accepted after SIGTERM")
	}
	if conn.IsClosed() {
		t.Error("the open connection was cut at once; it should get drain_timeout")
	}
	select {
	case err := <-l.done:
		l.done <- err
		if err != nil {
			t.Fatalf("amqplb exited with %v, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("amqplb did not exit after drain_timeout")
	}
	if d := time.Since(t0); d < 1500*time.Millisecond || d > 6*time.Second {
		t.Errorf("exited after %v, want about drain_timeout (2s)", d)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("the client never saw its connection closed")
	}
	waitLog(t, l, 1, "end=shutdown")
}

func TestThousandChecksLeaveNothingBehind(t *testing.T) {
	c := testenv.RequireCluster(t)
	node := c.Nodes[0]
	checker := &healthcheck.AMQPChecker{Timeout: 2 * time.Second}
	check := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if r := checker.Check(ctx, healthcheck.Target{Addr: node.AMQPAddr()}); !r.OK {
			t.Fatalf("check failed: %+v", r)
		}
	}
	check()
	// Warm up the HTTP client the broker is asked through, so its keep-alive connection is part
	// of the baseline.
	if _, err := node.ConnectionCount(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	fdBase, gBase := openFDs(t), runtime.NumGoroutine()
	for range 1000 {
		check()
	}
	if err := testenv.PollEvery(15*time.Second, brokerPoll, func() error {
		runtime.GC()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := node.ConnectionCount(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if fds, gs := openFDs(t), runtime.NumGoroutine(); fds > fdBase || gs > gBase || n != 0 {
			return fmt.Errorf("after 1000 checks: fds %d (baseline %d), goroutines %d (baseline %d), broker connections %d",
				fds, fdBase, gs, gBase, n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
