package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// raceBuild is set when the tests run with -race; the binary under test is then built with it too.
var raceBuild bool

// binary is the amqplb executable under test, built once in TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amqplb-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "amqplb")
	if runtime.GOOS == "windows" {
		binary += ".exe" // os/exec runs no program without its extension there
	}
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/amqplb")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building amqplb:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one [[backend.server]] of a generated configuration.
type server struct {
	name, addr string
	weight     int
	backup     bool
}

func nodesAsServers(c *testenv.Cluster) []server {
	var out []server
	for _, n := range c.Nodes {
		out = append(out, server{name: n.Name, addr: n.AMQPAddr(), weight: 1})
	}
	return out
}

// setup describes a generated amqplb.toml: one AMQP frontend, one backend, an admin listener.
type setup struct {
	balance string   // default roundrobin
	servers []server // the backend's servers
	global  string   // extra lines for [global]
	backend string   // extra lines for [[backend]]
	check   string   // lines for [backend.health_check]; default type = "none"
	admin   string   // extra lines for [admin]
}

// render writes the configuration for a frontend on bind and an admin API on adminAddr.
func (c setup) render(bind, adminAddr string) string {
	var b strings.Builder
	global := c.global
	if !strings.Contains(global, "drain_timeout") {
		global += "\ndrain_timeout = \"5s\""
	}
	check := c.check
	if check == "" {
		check = `type = "none"`
	}
	balance := c.balance
	if balance == "" {
		balance = "roundrobin"
	}
	fmt.Fprintf(&b, "[global]\nlog_level = \"debug\"\n%s\n\n[admin]\nlisten = %q\n%s\n\n", global, adminAddr, c.admin)
	fmt.Fprintf(&b, "[[frontend]]\nname = \"amqp\"\nbind = %q\nbackend = \"rabbitmq\"\n\n", bind)
	fmt.Fprintf(&b, "[[backend]]\nname = \"rabbitmq\"\nbalance = %q\nconnect_timeout = \"2s\"\n%s\n\n", balance, c.backend)
	fmt.Fprintf(&b, "[backend.health_check]\n%s\n\n", check)
	for _, s := range c.servers {
		fmt.Fprintf(&b, "[[backend.server]]\nname = %q\naddress = %q\nweight = %d\nbackup = %v\n\n", s.name, s.addr, s.weight, s.backup)
	}
	return b.String()
}

// lb is a running amqplb process.
type lb struct {
	cmd       *exec.Cmd
	addr      string // the AMQP frontend
	adminAddr string
	path      string // its configuration file
	log       *testenv.Buffer
	done      chan error
	env       []string // extra environment variables for the process
}

// startLB writes the configuration of c, with free frontend and admin addresses, and runs
// amqplb on it until it serves. The process is stopped with SIGTERM when t ends, and must exit 0.
func startLB(t testing.TB, c setup) *lb {
	t.Helper()
	bind, adminAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "amqplb.toml")
	if err := os.WriteFile(path, []byte(c.render(bind, adminAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &lb{addr: bind, adminAddr: adminAddr, path: path, log: &testenv.Buffer{}, done: make(chan error, 1)}
	return l.start(t)
}

// execBinary returns the command running the amqplb under test with args.
func execBinary(args ...string) *exec.Cmd { return exec.Command(binary, args...) }

// stop sends SIGTERM and waits for a zero exit.
func (l *lb) stop(within time.Duration) error {
	if l.cmd.ProcessState != nil {
		return nil
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-l.done:
		l.done <- err
		return err
	case <-time.After(within):
		_ = l.cmd.Process.Kill()
		return fmt.Errorf("no exit within %v after SIGTERM", within)
	}
}

func (l *lb) url() string { return "amqp://guest:guest@" + l.addr + "/" }

// dial opens an AMQP connection through amqplb and closes it when t ends.
func (l *lb) dial(t testing.TB) *amqp.Connection {
	t.Helper()
	// Named after the test, so that closeBrokerConnections finds this test's connections only.
	c, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second),
		Properties: amqp.Table{"connection_name": t.Name()}})
	if err != nil {
		t.Fatalf("AMQP connect through amqplb: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// brokerCounts asks every node how many client connections it holds.
func brokerCounts(t testing.TB, c *testenv.Cluster) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		k, err := n.ConnectionCount(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out[n.Name] = k
	}
	return out
}

// brokerPoll is how often a test asks the brokers again: each ask is an HTTP request to every
// node, which a busy machine's RabbitMQ answers in tens of milliseconds.
const brokerPoll = 100 * time.Millisecond

// waitCounts waits until the brokers report want (the management API lags by up to ~1 s).
func waitCounts(t testing.TB, c *testenv.Cluster, want map[string]int) {
	t.Helper()
	testenv.EventuallyEvery(t, 15*time.Second, brokerPoll, func() error {
		if got := brokerCounts(t, c); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("brokers report connections %v, want %v", got, want)
		}
		return nil
	})
}

func zeroCounts(c *testenv.Cluster) map[string]int {
	m := map[string]int{}
	for _, n := range c.Nodes {
		m[n.Name] = 0
	}
	return m
}

// mgmt calls node n's management HTTP API as guest.
func mgmt(t testing.TB, n *testenv.Node, method, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, n.ManagementURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("X-Reason", "amqplb e2e test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// closeBrokerConnections makes node n close the want client connections of this test (opened
// with lb.dial, named after it) that it holds. The management API's connection list lags
// behind, both ways: it waits for all of them to be listed, and the connections of a test that
// just ended, still listed, are not this test's.
func closeBrokerConnections(t testing.TB, n *testenv.Node, want int) {
	t.Helper()
	var names []string
	testenv.EventuallyEvery(t, 15*time.Second, brokerPoll, func() error {
		var conns []struct {
			Name, Node       string
			ClientProperties struct {
				ConnectionName string `json:"connection_name"`
			} `json:"client_properties"`
		}
		mgmt(t, n, http.MethodGet, "/api/connections?columns=name,node,client_properties", &conns)
		names = names[:0]
		for _, c := range conns {
			if c.Node == n.NodeName && c.ClientProperties.ConnectionName == t.Name() {
				names = append(names, c.Name)
			}
		}
		if len(names) < want {
			return fmt.Errorf("%s lists %d client connections of %s, want %d", n.Name, len(names), t.Name(), want)
		}
		return nil
	})
	for _, name := range names {
		mgmt(t, n, http.MethodDelete, "/api/connections/"+url.PathEscape(name), nil)
	}
}
