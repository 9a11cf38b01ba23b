package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Environment variables read by RequireCluster.
const (
	// EnvCluster is the path of the cluster.json of a running cluster
	// (`rabbitcluster up` prints it; `make test` sets it).
	EnvCluster = "AMQPLB_TEST_CLUSTER"
	// EnvCluster4 is the path of the cluster.json of a running RabbitMQ 4.0 cluster
	// (`rabbitcluster up -rabbitmq 4.0`; `make test` boots one next to the 3.10 one).
	EnvCluster4 = "AMQPLB_TEST_CLUSTER_4"
	// EnvRequireBrokers set to 1 (CI sets it) turns a missing cluster from a
	// skip into a failure.
	EnvRequireBrokers = "AMQPLB_REQUIRE_BROKERS"
)

// restoreTimeout bounds RequireCluster's repairs of the cluster. A node killed
// while its peers were down may wait for them, hence the margin.
const restoreTimeout = 3 * time.Minute

// RequireCluster returns the cluster named by AMQPLB_TEST_CLUSTER, with every
// node serving. Without the variable the test is skipped, or fails when
// AMQPLB_REQUIRE_BROKERS=1. It registers a cleanup that restores the cluster
// (see Restore), so a test that paused, killed or stopped a node leaves the
// next test a whole cluster.
//
// The cluster is shared: tests that disturb nodes must not run in parallel, in
// one binary (t.Parallel) or across packages (go test -p 1 for broker tests).
func RequireCluster(t testing.TB) *Cluster {
	t.Helper()
	return requireCluster(t, EnvCluster, RabbitMQ310, "")
}

// RequireCluster4 is RequireCluster for the RabbitMQ 4.0 cluster named by
// AMQPLB_TEST_CLUSTER_4 (`make test` boots it next to the 3.10 one): skipped
// without the variable, failed under AMQPLB_REQUIRE_BROKERS=1. Its nodes have
// the same ports, methods and failure injections as the 3.10 ones.
func RequireCluster4(t testing.TB) *Cluster {
	t.Helper()
	return requireCluster(t, EnvCluster4, RabbitMQ40, " -rabbitmq 4.0")
}

func requireCluster(t testing.TB, env, version, upFlags string) *Cluster {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		msg := fmt.Sprintf("no RabbitMQ %s cluster: %s is not set; run `make test`, which boots one "+
			"(or `go run ./internal/testenv/cmd/rabbitcluster up -dir DIR%s` and set %s=DIR/%s)",
			version, env, upFlags, env, StateFileName)
		if os.Getenv(EnvRequireBrokers) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c, err := LoadCluster(path)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	if c.Version() != version {
		t.Fatalf("%s: %s is a RabbitMQ %s cluster, want %s", env, path, c.Version(), version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	if err := c.Restore(ctx); err != nil {
		t.Fatalf("RabbitMQ cluster %s is not serving: %v", path, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
		defer cancel()
		if err := c.Restore(ctx); err != nil {
			t.Errorf("restore RabbitMQ cluster after the test: %v", err)
		}
	})
	return c
}

// Restore brings every node back to serving: it resumes paused nodes, starts
// nodes that are not running (all at once, as restarted cluster members wait for
// each other), runs start_app where the node runs but does not serve, and waits
// until each node serves AMQP. It is quick (one AMQP handshake per node) when
// nothing is wrong.
func (c *Cluster) Restore(ctx context.Context) error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.restore(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *Node) restore(ctx context.Context) error {
	if !n.Running() {
		return n.Start(ctx)
	}
	if err := n.Resume(); err != nil {
		return err
	}
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := n.WaitReady(quick)
	cancel()
	if err == nil {
		return nil
	}
	// Running but not serving: most likely after stop_app. start_app is
	// harmless on a node whose app runs.
	return n.StartApp(ctx)
}
