package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// TestHoldFakeBroker holds 50 connections to a fake broker in this very process and measures
// this process: each connection costs it two sockets, the client's and the fake broker's.
func TestHoldFakeBroker(t *testing.T) {
	checkLeaks(t)
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, fake.Handle)
	h := Hold{N: 50, PID: os.Getpid(), Settle: 100 * time.Millisecond, Concurrency: 8}
	var progress bytes.Buffer
	figs, err := h.Run(context.Background(), Target{Name: "fake", Addr: b.Addr()}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v\n%s", figs, progress.String())
	if got := fake.Opened(); got != 50 {
		t.Errorf("the broker saw %d connections opened, want 50", got)
	}
	for name, ok := range map[string]func(float64) bool{
		"conns":        func(v float64) bool { return v == 50 },
		"failures":     func(v float64) bool { return v == 0 },
		"fds_per_conn": func(v float64) bool { return v >= 1.9 && v <= 2.1 },
		"fds":          func(v float64) bool { return v >= 100 },
		"rss_bytes":    func(v float64) bool { return v > 0 },
		"connect_s":    func(v float64) bool { return v > 0 },
	} {
		if v, found := figs.Get(name); !found || !ok(v) {
			t.Errorf("%s = %v (found %v): out of range", name, v, found)
		}
	}
	if _, found := figs.Get("rss_bytes_per_conn"); !found {
		t.Error("no rss_bytes_per_conn")
	}
	// Every connection was closed cleanly at the end of the round (the broker's side of each
	// ends just after the client's: wait for it, then assert).
	_ = testenv.Poll(5*time.Second, func() error {
		if n := b.Active(); n > 0 {
			return fmt.Errorf("%d connections open", n)
		}
		return nil
	})
	if b.Active() != 0 || fake.CleanCloses() != 50 {
		t.Errorf("after the round: %d connections still open, %d closed cleanly", b.Active(), fake.CleanCloses())
	}
}

func TestHoldWithoutPID(t *testing.T) {
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, fake.Handle)
	figs, err := Hold{N: 5}.Run(context.Background(), Target{Name: "fake", Addr: b.Addr()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, found := figs.Get("fds_per_conn"); found {
		t.Error("process figures without a PID")
	}
	if v, _ := figs.Get("conns"); v != 5 {
		t.Errorf("conns = %v, want 5", v)
	}
}

func TestHoldUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t)
	_, err := Hold{N: 3}.Run(context.Background(), Target{Name: "gone", Addr: addr}, io.Discard)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("Run = %v, want an UnreachableError", err)
	}
	// A target that accepts and never answers: given up after the first Concurrency attempts.
	silent := testenv.StartFakeBroker(t, testenv.Silent)
	start := time.Now()
	_, err = Hold{N: 1000, Concurrency: 5, ConnectTimeout: 200 * time.Millisecond}.Run(context.Background(),
		Target{Name: "silent", Addr: silent.Addr()}, io.Discard)
	if !errors.As(err, &ue) {
		t.Errorf("Run against a silent target = %v, want an UnreachableError", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up on a silent target after %v", d)
	}
	// A process that does not exist is a harness error.
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, fake.Handle)
	if _, err := (Hold{N: 1, PID: 1 << 30}).Run(context.Background(), Target{Name: "fake", Addr: b.Addr()}, io.Discard); err == nil || errors.As(err, &ue) {
		t.Errorf("Run with no such process = %v", err)
	}
}

// TestHoldCluster holds connections to a real node and measures the node's process.
func TestHoldCluster(t *testing.T) {
	c := testenv.RequireCluster(t)
	n := c.Nodes[0]
	pid, err := n.PID()
	if err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	figs, err := Hold{N: 50, PID: pid, Settle: 500 * time.Millisecond}.Run(context.Background(),
		Target{Name: "node", Addr: n.AMQPAddr()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", figs)
	if v, _ := figs.Get("fds_per_conn"); v < 0.8 || v > 1.5 {
		t.Errorf("fds_per_conn = %v, want about 1 (the node's socket)", v)
	}
}

// With MetricsURL, hold reads the process's go_goroutines before and while holding.
func TestHoldGoroutinesPerConn(t *testing.T) {
	checkLeaks(t)
	fake := &testenv.FakeAMQP{}
	b := testenv.StartFakeBroker(t, fake.Handle)
	var scrapes atomic.Int32
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 10 + 40*scrapes.Add(1) - 40 // 10 before, 50 while holding
		fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines_other 3\ngo_goroutines %d\n", n)
	}))
	defer metrics.Close()
	h := Hold{N: 20, PID: os.Getpid(), Settle: time.Millisecond, Concurrency: 4, MetricsURL: metrics.URL}
	figs, err := h.Run(context.Background(), Target{Name: "fake", Addr: b.Addr()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := figs.Get("goroutines_per_conn"); !ok || v != 2 {
		t.Errorf("goroutines_per_conn = %v (found %v), want 2", v, ok)
	}
	_ = testenv.Poll(5*time.Second, func() error {
		if n := b.Active(); n > 0 {
			return fmt.Errorf("%d connections open", n)
		}
		return nil
	})
}
