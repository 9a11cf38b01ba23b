// Command rabbitcluster boots, inspects and stops the local RabbitMQ cluster
// that amqplb's broker tests run against (see package internal/testenv).
//
//	rabbitcluster up -dir DIR [-n 3] [-ports 5673,5674,5675] [-rabbitmq 3.10|4.0] [-timeout 5m]
//	rabbitcluster status -dir DIR
//	rabbitcluster down -dir DIR
//	rabbitcluster root [-rabbitmq 4.0] [-root DIR]
//
// up returns once every node serves AMQP; the nodes keep running after it exits.
// Point tests at the cluster with AMQPLB_TEST_CLUSTER=DIR/cluster.json (3.10) or
// AMQPLB_TEST_CLUSTER_4=DIR/cluster.json (4.0). -rabbitmq 4.0 runs Debian 13's
// RabbitMQ 4.0 from a cached trixie root, built first when missing (needs root);
// root only builds that root (if missing) and prints its path.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch sub, args := os.Args[1], os.Args[2:]; sub {
	case "up":
		err = up(args)
	case "down":
		err = down(args)
	case "status":
		err = status(args)
	case "root":
		err = root(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rabbitcluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  rabbitcluster up -dir DIR [-n 3] [-ports 5673,5674,5675] [-rabbitmq 3.10|4.0] [-timeout 5m]
  rabbitcluster status -dir DIR
  rabbitcluster down -dir DIR
  rabbitcluster root [-rabbitmq 4.0] [-root DIR]`)
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "cluster directory (required)")
	n := fs.Int("n", 0, "number of nodes (default 3, or the number of -ports)")
	portList := fs.String("ports", "", "comma-separated fixed AMQP ports, one per node (default: free ports)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up booting after this long (building a missing 4.0 root has 15m more)")
	version := fs.String("rabbitmq", testenv.RabbitMQ310, "RabbitMQ version: 3.10 (the host's package) or 4.0 (a trixie root)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("up: -dir is required")
	}
	var ports []int
	if *portList != "" {
		for _, s := range strings.Split(*portList, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || p <= 0 || p > 65535 {
				return fmt.Errorf("up: bad port %q", s)
			}
			ports = append(ports, p)
		}
	}
	// An interrupted up stops what it started (StartCluster cleans up on error).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t0 := time.Now()
	if *version != testenv.RabbitMQ310 {
		// Build the root first, with its own bound, so the boot keeps -timeout.
		if _, err := testenv.EnsureRoot(ctx, *version, "", os.Stderr); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := testenv.StartCluster(ctx, testenv.ClusterOptions{Dir: *dir, Nodes: *n, Ports: ports, Log: os.Stderr, RabbitMQ: *version})
	if errors.Is(err, testenv.ErrClusterRunning) {
		fmt.Fprintf(os.Stderr, "rabbitcluster: a cluster is already running in %s; `rabbitcluster down -dir %s` first\n", *dir, *dir)
		if c, lerr := testenv.LoadCluster(filepath.Join(*dir, testenv.StateFileName)); lerr == nil {
			printCluster(c)
		}
		os.Exit(1)
	}
	if err != nil {
		return err
	}
	fmt.Printf("cluster up in %v\n", time.Since(t0).Round(100*time.Millisecond))
	printCluster(c)
	return nil
}

func root(args []string) error {
	fs := flag.NewFlagSet("root", flag.ExitOnError)
	version := fs.String("rabbitmq", testenv.RabbitMQ40, "RabbitMQ version whose root to build")
	dir := fs.String("root", "", "the root's directory (default: the cache, see AMQPLB_TEST_ROOTFS)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := testenv.EnsureRoot(ctx, *version, *dir, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(r)
	return nil
}

func printCluster(c *testenv.Cluster) {
	fmt.Printf("%s=%s\n", envName(c), c.StateFile())
	for _, n := range c.Nodes {
		fmt.Printf("%s %s amqp=%s management=%s\n", n.Name, n.NodeName, n.AMQPAddr(), n.ManagementURL())
	}
}

func load(args []string, name string) (*testenv.Cluster, error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	dir := fs.String("dir", "", "cluster directory (required)")
	_ = fs.Parse(args)
	if *dir == "" {
		return nil, fmt.Errorf("%s: -dir is required", name)
	}
	return testenv.LoadCluster(filepath.Join(*dir, testenv.StateFileName))
}

func down(args []string) error {
	c, err := load(args, "down")
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("no cluster there")
		return nil
	}
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := c.Stop(); err != nil {
		return err
	}
	fmt.Printf("cluster in %s stopped in %v\n", c.Dir, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

func status(args []string) error {
	c, err := load(args, "status")
	if err != nil {
		return err
	}
	fmt.Printf("%s=%s\n", envName(c), c.StateFile())
	down := 0
	for _, n := range c.Nodes {
		state := "stopped"
		switch {
		case n.Paused():
			state = "paused"
		case n.Running():
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := n.WaitReady(ctx); err != nil {
				state = "running, not serving AMQP"
			} else {
				state = "serving"
			}
			cancel()
		}
		if state != "serving" {
			down++
		}
		fmt.Printf("%s %s amqp=%s management=%s: %s\n", n.Name, n.NodeName, n.AMQPAddr(), n.ManagementURL(), state)
	}
	if down > 0 {
		return fmt.Errorf("%d of %d nodes not serving", down, len(c.Nodes))
	}
	return nil
}

// envName is the variable that points tests at c.
func envName(c *testenv.Cluster) string {
	if c.Version() == testenv.RabbitMQ40 {
		return testenv.EnvCluster4
	}
	return testenv.EnvCluster
}
