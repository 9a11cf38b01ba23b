package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
	"go.uber.org/goleak"
)

func TestStormAgainstBroker(t *testing.T) {
	c := testenv.RequireCluster(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	target := Target{Name: "rmq1", Addr: c.Nodes[0].AMQPAddr()}
	var progress testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := Storm{N: 200, C: 10}
	res, err := s.run(ctx, target, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", progress.String())
	if res.failed != 0 || res.ok != 200 {
		t.Fatalf("%d connections, %d failures (first: %v); want 200 and 0", res.ok, res.failed, res.firstErr)
	}
	if h := res.handshake; h.Count != 200 || h.P50 <= 0 || h.P50 > h.P99 || h.P99 > h.Max {
		t.Errorf("handshake %+v", h)
	}
	if !strings.Contains(progress.String(), "200 connections") {
		t.Errorf("progress: %s", progress.String())
	}

	figs, err := Storm{N: 20, C: 4}.Run(ctx, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := figs.Get("connections"); v <= 0 {
		t.Errorf("figures %v", figs)
	}
	if v, ok := figs.Get("failures"); !ok || v != 0 {
		t.Errorf("figures %v", figs)
	}
}

func TestStormValidate(t *testing.T) {
	if err := (Storm{N: -1}).Validate(); err == nil {
		t.Error("negative N accepted")
	}
	if s := (Storm{N: 5, C: 50}).withDefaults(); s.C != 5 {
		t.Errorf("C = %d, want capped at N", s.C)
	}
}
