//go:build linux

package faults

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// checks are the health checks of every row: an AMQP handshake each second, 500 ms while a
// change is pending, down after 2 failures, up after 2 passes. HAProxy gets the same numbers.
const (
	checkInterval = time.Second
	checkFast     = 500 * time.Millisecond
	checkTimeout  = 500 * time.Millisecond
	checkFall     = 2
)

// lbConfig is a generated amqplb.toml: one frontend in front of the cluster's nodes, each
// server with its node's management port (the nodes share 127.0.0.1).
type lbConfig struct {
	global  string            // extra [global] lines
	check   string            // extra [backend.health_check] lines
	backend string            // extra [[backend]] lines
	mgmt    string            // extra keys of the health check's management table (", alarms = true")
	servers int               // how many of the nodes are servers; 0 = all
	extra   string            // appended as is (another [[frontend]])
	order   []int             // the nodes' order as servers (with balance = "first": who gets the clients)
	addrs   map[string]string // node name → the address to reach it at, when not its own (a namespace's relay)
	noMgmt  bool              // no management API (a node behind a relay has its AMQP port only)
	timeout time.Duration     // the checks' timeout; 0 = checkTimeout
	fall    int               // 0 = checkFall
}

func (cfg lbConfig) checkTimeout() time.Duration {
	if cfg.timeout == 0 {
		return checkTimeout
	}
	return cfg.timeout
}

func (cfg lbConfig) checkFall() int {
	if cfg.fall == 0 {
		return checkFall
	}
	return cfg.fall
}

// addr is where the balancers reach node n.
func (cfg lbConfig) addr(n *testenv.Node) string {
	if a, ok := cfg.addrs[n.Name]; ok {
		return a
	}
	return n.AMQPAddr()
}

func (cfg lbConfig) render(c *testenv.Cluster, bind, admin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_level = \"info\"\naccess_log = false\ndrain_timeout = \"5s\"\n%s\n\n", cfg.global)
	fmt.Fprintf(&b, "[admin]\nlisten = %q\n\n", admin)
	fmt.Fprintf(&b, "[[frontend]]\nname = \"amqp\"\nbind = %q\nbackend = \"rabbitmq\"\n\n", bind)
	fmt.Fprintf(&b, "[[backend]]\nname = \"rabbitmq\"\nconnect_timeout = \"2s\"\nretries = 3\nredispatch = true\n%s\n\n", cfg.backend)
	mgmt := fmt.Sprintf("management = { port = %d%s }", c.Nodes[0].ManagementPort, cfg.mgmt)
	if cfg.noMgmt {
		mgmt = ""
	}
	fmt.Fprintf(&b, "[backend.health_check]\ntype = \"amqp\"\ninterval = %q\nfast_interval = %q\ndown_interval = %q\ntimeout = %q\nrise = 2\nfall = %d\n%s\n%s\n\n",
		checkInterval, checkFast, checkInterval, cfg.checkTimeout(), cfg.checkFall(), mgmt, cfg.check)
	nodes := c.Nodes
	if cfg.order != nil {
		nodes = nil
		for _, i := range cfg.order {
			nodes = append(nodes, c.Nodes[i])
		}
	}
	if cfg.servers > 0 {
		nodes = nodes[:cfg.servers]
	}
	b.WriteString(cfg.extra + "\n\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "[[backend.server]]\nname = %q\naddress = %q\n", n.Name, cfg.addr(n))
		if !cfg.noMgmt {
			fmt.Fprintf(&b, "management_port = %d\n", n.ManagementPort)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// lb is a running amqplb process.
type lb struct {
	cmd         *exec.Cmd
	addr, admin string
	path        string
	log         *testenv.Buffer
	done        chan error
}

// startLB runs amqplb on cfg until it serves; it is stopped with SIGTERM when t ends and must
// exit 0 then.
func startLB(t *testing.T, c *testenv.Cluster, cfg lbConfig) *lb {
	t.Helper()
	l := &lb{addr: testenv.FreeAddr(t), admin: testenv.FreeAddr(t), log: &testenv.Buffer{}, done: make(chan error, 1)}
	l.path = filepath.Join(t.TempDir(), "amqplb.toml")
	l.write(t, cfg.render(c, l.addr, l.admin))
	l.cmd = exec.Command(binary, "-f", l.path)
	l.cmd.Stdout, l.cmd.Stderr = l.log, l.log
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	t.Cleanup(func() {
		if err := l.stop(10 * time.Second); err != nil {
			t.Errorf("amqplb did not stop cleanly: %v", err)
		}
		if t.Failed() {
			t.Logf("amqplb output:\n%s", l.log.String())
		}
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(l.log.String(), "amqplb started") {
			return fmt.Errorf("amqplb did not start:\n%s", l.log.String())
		}
		return nil
	})
	return l
}

func (l *lb) write(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(l.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (l *lb) url() string { return "amqp://guest:guest@" + l.addr + "/" }

// stop sends SIGTERM and waits for a zero exit.
func (l *lb) stop(within time.Duration) error {
	select {
	case err := <-l.done:
		l.done <- err
		return err
	default:
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

// metric returns the value of the first series of /metrics whose line starts with name and
// holds every one of labels (`frontend="flood"`), or -1.
func (l *lb) metric(name string, labels ...string) float64 {
	resp, err := http.Get("http://" + l.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, lb := range labels {
			if !strings.Contains(line, lb) {
				continue next
			}
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			return v
		}
	}
	return -1
}

// apiServer is a server as GET /api/v1/backends shows it.
type apiServer struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Suspect bool   `json:"suspect"`
	Check   struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
		At     string `json:"at"`
	} `json:"check"`
	ActiveConnections int64 `json:"active_connections"`
}

// servers reads the backend's servers from the admin API.
func (l *lb) servers() (map[string]apiServer, error) {
	resp, err := http.Get("http://" + l.admin + "/api/v1/backends")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Backends []struct {
			Servers []apiServer `json:"servers"`
		} `json:"backends"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string]apiServer{}
	for _, b := range body.Backends {
		for _, s := range b.Servers {
			out[s.Name] = s
		}
	}
	return out, nil
}

// server is one server's view, the zero value when the API did not answer.
func (l *lb) server(name string) apiServer {
	s, _ := l.servers()
	return s[name]
}

// serving tells whether amqplb sends new clients to the server: up, checked, not suspect.
func (l *lb) serving(name string) bool {
	s := l.server(name)
	return s.State == "up" && s.Check.Status == "ok" && !s.Suspect
}

// haproxy is Debian's HAProxy 2.6 in front of the cluster with checks equivalent to amqplb's:
// the AMQP protocol header, expecting Connection.Start (a method frame on channel 0), at the
// same interval, timeout, rise and fall.
type haproxy struct {
	addr, socket string
}

// startHAProxy runs haproxy -db in front of c's nodes (at cfg's addresses, with cfg's check
// timeout and fall) until its stats socket answers; it is killed when t ends.
func startHAProxy(t *testing.T, c *testenv.Cluster, cfg lbConfig) *haproxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	h := &haproxy{addr: testenv.FreeAddr(t), socket: filepath.Join(dir, "stats.sock")}
	var servers strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&servers, "\tserver %s %s check inter %dms fastinter %dms downinter %dms rise 2 fall %d\n",
			n.Name, cfg.addr(n), checkInterval.Milliseconds(), checkFast.Milliseconds(), checkInterval.Milliseconds(), cfg.checkFall())
	}
	text := fmt.Sprintf(`global
	maxconn 4000
	stats socket %s mode 600 level admin
defaults
	mode tcp
	timeout connect 2s
	timeout client 3h
	timeout server 3h
	timeout check %dms
	retries 3
	option redispatch
listen rabbitmq
	bind %s
	balance roundrobin
	option tcp-check
	tcp-check send-binary 414d515000000901
	tcp-check expect binary 0100000000
%s`, h.socket, cfg.checkTimeout().Milliseconds(), h.addr, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		conn, err := net.Dial("unix", h.socket)
		if err != nil {
			return fmt.Errorf("haproxy did not start: %v\n%s", err, out.String())
		}
		conn.Close()
		return nil
	})
	return h
}

func (h *haproxy) url() string { return "amqp://guest:guest@" + h.addr + "/" }

// status returns HAProxy's status of a server ("UP", "DOWN", "UP 1/2", …), "" if unknown.
func (h *haproxy) status(server string) string { return h.stat(server, "status") }

// stat returns one column of HAProxy's `show stat` for a server, "" if unknown.
func (h *haproxy) stat(server, column string) string {
	conn, err := net.Dial("unix", h.socket)
	if err != nil {
		return ""
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return ""
	}
	r := csv.NewReader(bufio.NewReader(conn))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return ""
	}
	col := -1
	for i, name := range rows[0] {
		if strings.TrimPrefix(name, "# ") == column {
			col = i
		}
	}
	for _, row := range rows[1:] {
		if col >= 0 && len(row) > col && row[1] == server {
			return row[col]
		}
	}
	return ""
}
