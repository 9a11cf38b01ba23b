package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amqplb/amqplb/internal/testenv"
)

func TestFlagsAndUnreachableTargets(t *testing.T) {
	closed := testenv.FreeAddr(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{"no subcommand", nil, 2, "usage: amqplb-bench SUBCOMMAND", ""},
		{"unknown subcommand", []string{"nope"}, 2, `unknown subcommand "nope"`, ""},
		{"bad flag", []string{"pubsub", "-bogus"}, 2, "flag provided but not defined: -bogus", ""},
		{"bad target", []string{"storm", "-target", "x=nohostport"}, 2, "want NAME=HOST:PORT", ""},
		{"no target", []string{"storm"}, 2, "at least one -target is required", ""},
		{"duplicate target", []string{"storm", "-target", "a=127.0.0.1:1", "-target", "a=127.0.0.1:2"}, 2, `target name "a" given twice`, ""},
		{"failover without fault", []string{"failover", "-target", closed}, 2, "-fault is required", ""},
		{"help", []string{"pubsub", "-h"}, 0, "-producers", ""},
		{"rolling without nodes", []string{"rolling", "-target", closed}, 2, "-node or -cluster is required", ""},
		{"rolling bad step", []string{"rolling", "-target", closed, "-step", "nocommand"}, 2, "want LABEL=COMMAND", ""},
		{"rolling bad cluster", []string{"rolling", "-target", closed, "-cluster", "/nonexistent/cluster.json"}, 2, "no such file", ""},
		{"unreachable rolling", []string{"rolling", "-target", "gone=" + closed, "-node", "n1=http://" + closed + "/metrics"}, 1,
			"could not be measured", "UNREACHABLE"},
		{"unreachable storm", []string{"storm", "-target", "gone=" + closed, "-n", "5", "-rounds", "1"}, 1,
			"target gone (" + closed + ") could not be measured", "UNREACHABLE"},
		{"unreachable pubsub", []string{"pubsub", "-target", "gone=" + closed, "-duration", "1s", "-rounds", "1"}, 1,
			"could not be measured", "UNREACHABLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.stderr)
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
		})
	}
}

func TestClusterNodes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.json")
	json := `{"dir":"/x","nodes":[{"name":"rmq1","node_name":"amqplb-rmq1@localhost","amqp_port":5673,"prometheus_port":15692},
		{"name":"rmq2","amqp_port":5674,"prometheus_port":15693}]}`
	if err := os.WriteFile(path, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes, err := clusterNodes(path)
	if err != nil || len(nodes) != 2 || nodes[1].Name != "rmq2" || nodes[1].MetricsURL != "http://127.0.0.1:15693/metrics" {
		t.Fatalf("clusterNodes: %+v, %v", nodes, err)
	}
	if err := os.WriteFile(path, []byte(`{"nodes":[{"name":"rmq1"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := clusterNodes(path); err == nil {
		t.Error("a node without prometheus_port: no error")
	}
}
