package e2e

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// BenchmarkFrozenBroker puts amqplb and HAProxy side by side in front of the same cluster, with
// the same checks (every 2s, rise 2, fall 3), freezes one broker with SIGSTOP and, for 15 s,
// connects through each as fast as it can (a connect gives up after 3 s, like an impatient
// client). It reports per proxy the failed connects, the slowest connect and when (if ever) the
// frozen broker was taken out of rotation. It needs the test cluster and Debian's haproxy:
//
//	AMQPLB_TEST_CLUSTER=.../cluster.json go test -run '^$' -bench FrozenBroker -benchtime 1x ./e2e/
func BenchmarkFrozenBroker(b *testing.B) {
	c := testenv.RequireCluster(b)
	haproxyBin, err := exec.LookPath("haproxy")
	if err != nil {
		b.Fatal("haproxy is not installed (make deps installs it)")
	}
	for b.Loop() {
		l := startLB(b, setup{servers: nodesAsServers(c), check: `type = "amqp"`, backend: "retries = 3\nredispatch = true"})
		hp := startHAProxyFor(b, haproxyBin, c)
		victim := c.Nodes[1]
		for _, n := range c.Nodes {
			l.waitState(b, n.Name, "up", 15*time.Second)
		}
		// HAProxy's servers are up after rise (2) checks.
		testenv.EventuallyEvery(b, 15*time.Second, 100*time.Millisecond, func() error {
			for _, n := range c.Nodes {
				if st := hp.status(b, n.Name); st != "UP" {
					return fmt.Errorf("haproxy says %s is %q", n.Name, st)
				}
			}
			return nil
		})
		if err := victim.Pause(); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		type result struct {
			ok, failed int
			slowest    time.Duration
			ejectedAt  time.Duration // -1: never
		}
		results := map[string]*result{"amqplb": {ejectedAt: -1}, "haproxy": {ejectedAt: -1}}
		urls := map[string]string{"amqplb": l.url(), "haproxy": "amqp://guest:guest@" + hp.addr + "/"}
		var wg sync.WaitGroup
		for name, r := range results {
			wg.Go(func() {
				for time.Since(t0) < 15*time.Second {
					s := time.Now()
					conn, err := amqp.DialConfig(urls[name], amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
					if d := time.Since(s); d > r.slowest {
						r.slowest = d
					}
					if err != nil {
						r.failed++
						continue
					}
					r.ok++
					conn.Close()
				}
			})
		}
		// Watch both proxies' view from this goroutine: b.Fatal must not run in another one.
		for time.Since(t0) < 15*time.Second {
			if results["amqplb"].ejectedAt < 0 && l.servers(b)[victim.Name].State == "down" {
				results["amqplb"].ejectedAt = time.Since(t0)
			}
			if results["haproxy"].ejectedAt < 0 && hp.status(b, victim.Name) != "UP" {
				results["haproxy"].ejectedAt = time.Since(t0)
			}
			time.Sleep(100 * time.Millisecond) // sampling period of the 15 s watch, not a wait
		}
		wg.Wait()
		if err := victim.Resume(); err != nil {
			b.Fatal(err)
		}
		for name, r := range results {
			b.ReportMetric(float64(r.failed), name+"-failed-connects")
			b.ReportMetric(float64(r.ok), name+"-ok-connects")
			b.ReportMetric(r.slowest.Seconds(), name+"-slowest-connect-s")
			ejected := -1.0 // never, within the 15 s
			if r.ejectedAt >= 0 {
				ejected = r.ejectedAt.Seconds()
			}
			b.ReportMetric(ejected, name+"-ejected-after-s")
		}
	}
}

// haproxyProc is HAProxy in front of a test cluster, with a stats socket to ask for its view.
type haproxyProc struct {
	addr, socket string
}

func startHAProxyFor(b *testing.B, bin string, c *testenv.Cluster) *haproxyProc {
	dir := b.TempDir()
	h := &haproxyProc{addr: testenv.FreeAddr(b), socket: filepath.Join(dir, "stats.sock")}
	var servers strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&servers, "\tserver %s %s check inter 2s rise 2 fall 3\n", n.Name, n.AMQPAddr())
	}
	// The configuration a RabbitMQ user runs today: TCP checks, redispatch, splice.
	cfg := fmt.Sprintf(`global
	maxconn 4000
	stats socket %s mode 600 level admin
defaults
	mode tcp
	timeout connect 5s
	timeout client 3h
	timeout server 3h
	retries 3
	option redispatch
	option splice-auto
listen rabbitmq
	bind %s
	balance roundrobin
%s`, h.socket, h.addr, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := testenv.Poll(5*time.Second, func() error {
		conn, err := net.Dial("unix", h.socket)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		b.Fatalf("haproxy did not start: %v\n%s", err, out.String())
	}
	return h
}

// status returns HAProxy's status of a server ("UP", "DOWN", "UP 1/3", ...).
func (h *haproxyProc) status(b *testing.B, server string) string {
	conn, err := net.Dial("unix", h.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		b.Fatal(err)
	}
	r := csv.NewReader(bufio.NewReader(conn))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		b.Fatalf("show stat: %v", err)
	}
	col := -1
	for i, h := range rows[0] {
		if strings.TrimPrefix(h, "# ") == "status" {
			col = i
		}
	}
	for _, row := range rows[1:] {
		if len(row) > col && row[1] == server {
			return row[col]
		}
	}
	return ""
}
