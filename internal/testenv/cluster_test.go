package testenv_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestClusterFormed(t *testing.T) {
	c := testenv.RequireCluster(t)
	if len(c.Nodes) != 3 {
		t.Fatalf("cluster has %d nodes, want 3", len(c.Nodes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.Nodes[0].Rabbitmqctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		RunningNodes []string `json:"running_nodes"`
		DiskNodes    []string `json:"disk_nodes"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("cluster_status: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		if !slices.Contains(status.RunningNodes, n.NodeName) {
			t.Errorf("%s not among running nodes %v", n.NodeName, status.RunningNodes)
		}
		if !slices.Contains(status.DiskNodes, n.NodeName) {
			t.Errorf("%s not a member (disk nodes %v)", n.NodeName, status.DiskNodes)
		}
	}
}

func TestEachNodeServesAMQP(t *testing.T) {
	c := testenv.RequireCluster(t)
	for _, n := range c.Nodes {
		conn, err := amqp.Dial(n.URL())
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDeclare("", false, true, true, false, nil)
		}
		if err != nil {
			t.Errorf("%s: declare a queue: %v", n.Name, err)
		}
		conn.Close()
		if pid, err := n.PID(); err != nil || pid <= 0 {
			t.Errorf("%s: PID() = %d, %v", n.Name, pid, err)
		}
	}
}

// waitCount polls n's connection count until it is want and returns how long
// that took.
func waitCount(t *testing.T, n *testenv.Node, want int) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.EventuallyEvery(t, 5*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if got, err := n.ConnectionCount(ctx); err != nil || got != want {
			return fmt.Errorf("%s: ConnectionCount = %d, %v; want %d", n.Name, got, err, want)
		}
		return nil
	})
	return time.Since(start)
}

func TestConnectionCount(t *testing.T) {
	c := testenv.RequireCluster(t)
	for i, n := range c.Nodes {
		other := c.Nodes[(i+1)%len(c.Nodes)]
		waitCount(t, n, 0)
		conn, err := amqp.Dial(n.URL())
		if err != nil {
			t.Fatal(err)
		}
		up := waitCount(t, n, 1)
		// The count is per node: the peer, which sees it cluster-wide, must not.
		if got, err := other.ConnectionCount(context.Background()); err != nil || got != 0 {
			t.Errorf("%s counts %d (%v) while only %s has a connection", other.Name, got, err, n.Name)
		}
		conn.Close()
		down := waitCount(t, n, 0)
		t.Logf("%s: count followed the open in %v, the close in %v", n.Name, up.Round(time.Millisecond), down.Round(time.Millisecond))
	}
}

func TestPauseResume(t *testing.T) {
	c := testenv.RequireCluster(t)
	n := c.Node("rmq2")
	if err := n.Pause(); err != nil {
		t.Fatal(err)
	}
	if !n.Paused() {
		t.Error("Paused() = false after Pause")
	}
	// The kernel still completes the TCP handshake for the stopped broker...
	tcp, err := net.DialTimeout("tcp", n.AMQPAddr(), time.Second)
	if err != nil {
		t.Fatalf("TCP connect to paused node: %v", err)
	}
	tcp.Close()
	// ...but the broker never answers the protocol header...
	raw, err := net.DialTimeout("tcp", n.AMQPAddr(), time.Second)
	if err != nil {
		t.Fatalf("TCP connect to paused node: %v", err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read Connection.Start from paused node: %v, want a timeout", err)
	}
	// ...so a client's dial fails only at its own timeout.
	const timeout = 1500 * time.Millisecond
	start := time.Now()
	conn, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: amqp.DefaultDial(timeout)})
	if err == nil {
		conn.Close()
		t.Fatal("AMQP dial to a paused node succeeded")
	}
	if elapsed := time.Since(start); elapsed < timeout-100*time.Millisecond {
		t.Errorf("AMQP dial failed after %v, before its timeout (%v): %v", elapsed, timeout, err)
	}

	if err := n.Resume(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

func TestKillStart(t *testing.T) {
	c := testenv.RequireCluster(t)
	n := c.Node("rmq3")
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if n.Running() {
		t.Error("Running() = true after Kill")
	}
	if conn, err := net.DialTimeout("tcp", n.AMQPAddr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("TCP connect to a killed node succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(start).Round(100*time.Millisecond))
	// It is back in its cluster: a peer sees it running.
	out, err := c.Nodes[0].Rabbitmqctl(ctx, "cluster_status", "--formatter", "json")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		RunningNodes []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(status.RunningNodes, n.NodeName) {
		t.Errorf("%s not running in the cluster after Start: %v", n.NodeName, status.RunningNodes)
	}
}

func TestStopAppStartApp(t *testing.T) {
	c := testenv.RequireCluster(t)
	n := c.Node("rmq2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.StopApp(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.Running() {
		t.Error("Running() = false after StopApp; the Erlang node should stay up")
	}
	if conn, err := amqp.Dial(n.URL()); err == nil {
		conn.Close()
		t.Fatal("AMQP dial succeeded after stop_app")
	}
	if err := n.StartApp(ctx); err != nil {
		t.Fatal(err)
	}
}
