package main

import (
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/amqplb/amqplb/admin"
	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/config"
	"github.com/amqplb/amqplb/healthcheck"
	"github.com/amqplb/amqplb/rebalance"
)

func TestManagementBases(t *testing.T) {
	mk := func(name, addr string) *backend.Server {
		return backend.NewServer(backend.ServerOptions{Name: name, Address: addr, Weight: 1})
	}
	b := &backend.Backend{Name: "b", Servers: []*backend.Server{
		mk("a", "10.0.0.1:5672"), mk("b", "10.0.0.2:5673"), mk("c", "10.0.0.1:5674"), mk("d", "[::1]:5675"),
	}}
	// d has a management port of its own (management_port).
	portOf := func(s *backend.Server) int {
		if s.Name() == "d" {
			return 25672
		}
		return 15672
	}
	bases, port := managementBases(b, b.Servers[1], portOf)
	want := []string{"http://10.0.0.2:15672", "http://10.0.0.1:15672", "http://[::1]:25672"}
	if !slices.Equal(bases, want) || port != 5673 {
		t.Errorf("managementBases = %v, %d; want %v, 5673", bases, port, want)
	}
}

// Every backend gets a rebalance loop, with a management API or without (amqplb then closes the
// sessions itself); a generation starts and stops them.
func TestRebalancersPerBackend(t *testing.T) {
	cfg := config.DefaultConfig()
	with, without := config.DefaultBackend(), config.DefaultBackend()
	with.Name, without.Name = "with", "without"
	with.HealthCheck.Management = &config.Management{Port: 15672}
	with.Rebalance = &config.Rebalance{Enabled: true, Tolerance: 0, Rate: "5/s"}
	for _, b := range []*config.Backend{&with, &without} {
		s := config.DefaultServer()
		s.Name, s.Address = "s1", "127.0.0.1:1"
		b.Servers = []config.Server{s}
		b.HealthCheck.Type = "none"
	}
	cfg.Backends = []config.Backend{with, without}
	a := &app{log: slog.New(slog.DiscardHandler), checks: healthcheck.NewStatuses(), rebal: rebalance.NewStats()}
	g, err := a.build(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.rebalancers["with"] == nil || g.rebalancers["without"] == nil {
		t.Fatalf("rebalancers %v, want one for each backend", g.rebalancers)
	}
	a.gen.Store(g)
	g.start()
	defer g.stop()
	if v, err := a.rebalanceNow("with", true); err != nil || len(v) != 0 {
		t.Errorf("dry run on an idle backend = %v, %v", v, err)
	}
	if v, err := a.rebalanceNow("without", true); err != nil || len(v) != 0 {
		t.Errorf("dry run without management = %v, %v", v, err)
	}
	if _, err := a.rebalanceNow("nosuch", true); !errors.Is(err, admin.ErrRebalanceUnavailable) {
		t.Errorf("rebalance of an unknown backend: %v, want ErrRebalanceUnavailable", err)
	}
}
