package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// debianPython is Debian's Python, where Debian's python3-pika and python3-qpid-proton are
// installed (make deps); a python3 earlier in PATH (pyenv, a venv) would not have them.
const debianPython = "/usr/bin/python3"

// pikaClient is a running pika_client.py: a real AMQP client nobody here wrote.
type pikaClient struct {
	cmd   *exec.Cmd
	lines chan string // what it prints, line by line
	port  int         // its local port, once open
}

// startPika runs testdata/pika_client.py against addr and waits until its connection is open.
// It is killed (and resumed first, if frozen) when t ends.
func startPika(t *testing.T, addr, user, password, vhost, name string, heartbeat, hold int) *pikaClient {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(debianPython, "testdata/pika_client.py", host, port, user, password, vhost, name,
		fmt.Sprint(heartbeat), fmt.Sprint(hold))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pikaClient{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(sigCont)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case line, ok := <-p.lines:
		if !ok || !strings.HasPrefix(line, "open ") {
			_ = cmd.Wait()
			t.Fatalf("pika did not open its connection (%q): %s", line, stderr)
		}
		fmt.Sscan(strings.TrimPrefix(line, "open "), &p.port)
	case <-time.After(30 * time.Second):
		t.Fatalf("pika did not open its connection within 30s: %s", stderr)
	}
	return p
}

// onBothVersions runs test against the RabbitMQ 3.10 cluster and the 4.0 one, in parallel: it
// must not disturb the nodes.
func onBothVersions(t *testing.T, test func(*testing.T, *testenv.Cluster)) {
	c310, c40 := testenv.RequireCluster(t), testenv.RequireCluster4(t)
	for name, c := range map[string]*testenv.Cluster{"3.10": c310, "4.0": c40} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, c)
		})
	}
}

// addUser creates a user with its own vhost on the cluster, removed when t ends.
func addUser(t *testing.T, c *testenv.Cluster, user, password, vhost string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := c.Nodes[0]
	for _, args := range [][]string{
		{"add_user", user, password},
		{"add_vhost", vhost},
		{"set_permissions", "-p", vhost, user, ".*", ".*", ".*"},
	} {
		if _, err := n.Rabbitmqctl(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = n.Rabbitmqctl(ctx, "delete_vhost", vhost)
		_, _ = n.Rabbitmqctl(ctx, "delete_user", user)
	})
}

// A real client's identity (user, vhost, connection name, product, heartbeat) reaches the access
// log, the session list and the vhost metric; its password reaches nothing amqplb writes or
// serves; the session list closes it by id.
func TestPikaIdentityAndNoPassword(t *testing.T) {
	onBothVersions(t, testPikaIdentityAndNoPassword)
}

func testPikaIdentityAndNoPassword(t *testing.T, c *testenv.Cluster) {
	const user, password, vhost = "e2e-alice", "pw-E2E-s3cret-7", "e2e-orders"
	addUser(t, c, user, password, vhost)
	l := startLB(t, setup{servers: nodesAsServers(c), admin: `token = "adm1n"`})
	p := startPika(t, l.addr, user, password, vhost, "billing-worker-7", 30, 600)

	var list struct {
		Sessions []struct {
			ID               uint64 `json:"id"`
			Protocol         string `json:"protocol"`
			User             string `json:"user"`
			VHost            string `json:"vhost"`
			ConnectionName   string `json:"connection_name"`
			ClientProduct    string `json:"client_product"`
			HeartbeatSeconds int    `json:"heartbeat_seconds"`
			Server           string `json:"server"`
		} `json:"sessions"`
		Total int `json:"total"`
	}
	getJSON(t, "http://"+l.adminAddr+"/api/v1/sessions?user="+user, &list)
	if list.Total != 1 || len(list.Sessions) != 1 {
		t.Fatalf("GET /api/v1/sessions?user=%s: %+v", user, list)
	}
	s := list.Sessions[0]
	if s.Protocol != "amqp-0-9-1" || s.VHost != vhost || s.ConnectionName != "billing-worker-7" ||
		!strings.Contains(strings.ToLower(s.ClientProduct), "pika") || s.HeartbeatSeconds != 30 || s.Server == "" {
		t.Errorf("session %+v", s)
	}
	if v := metric(t, l.scrape(t), "amqplb_vhost_sessions", map[string]string{"vhost": vhost}); v != 1 {
		t.Errorf("amqplb_vhost_sessions{vhost=%q} = %v, want 1", vhost, v)
	}
	// Every read endpoint that could show a session: the list, the session itself, the servers
	// and frontends, the metrics and the status page.
	for _, path := range []string{"/metrics", "/api/v1/sessions", fmt.Sprintf("/api/v1/sessions/%d", s.ID),
		"/api/v1/backends", "/api/v1/backends/rabbitmq", "/api/v1/frontends", "/"} {
		resp, err := http.Get("http://" + l.adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		if strings.Contains(string(body), password) {
			t.Errorf("GET %s shows the password", path)
		}
	}

	// Close it by id: pika sees its connection end, the log says why.
	if code := postJSON(t, fmt.Sprintf("http://%s/api/v1/sessions/%d/close", l.adminAddr, s.ID), "adm1n", ""); code != http.StatusOK {
		t.Fatalf("POST .../sessions/%d/close: %d", s.ID, code)
	}
	for range p.lines { // until pika exits
	}
	line := waitLog(t, l, 1, "connection_name=billing-worker-7")
	for _, kv := range []string{"end=closed_by_admin", "protocol=amqp-0-9-1", "user=" + user, "vhost=" + vhost, "heartbeat=30s"} {
		if !strings.Contains(line, kv) {
			t.Errorf("access log line lacks %s: %s", kv, line)
		}
	}
	if !strings.Contains(strings.ToLower(line), "client_product=\"pika") {
		t.Errorf("access log line does not name the client product (pika): %s", line)
	}
	if strings.Contains(l.log.String(), password) {
		t.Error("amqplb's log shows the password")
	}
}

// getJSON decodes the JSON answer of GET url into out.
func getJSON(t testing.TB, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// idle_timeout = "heartbeat": a frozen client (heartbeat 2 s) is closed within 3 heartbeats
// (end=heartbeat_timeout), while a healthy idle one with the same heartbeat lives on.
func TestHeartbeatTimeoutClosesAFrozenClientOnly(t *testing.T) {
	onBothVersions(t, testHeartbeatTimeoutClosesAFrozenClientOnly)
}

func testHeartbeatTimeoutClosesAFrozenClientOnly(t *testing.T, c *testenv.Cluster) {
	l := startLB(t, setup{servers: nodesAsServers(c), backend: `idle_timeout = "heartbeat"`})
	healthy := startPika(t, l.addr, "guest", "guest", "/", "healthy-idle", 2, 60)
	frozen := startPika(t, l.addr, "guest", "guest", "/", "frozen", 2, 600)
	if err := frozen.cmd.Process.Signal(sigStop); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	line := waitLog(t, l, 1, "connection_name=frozen")
	took := time.Since(stopped)
	if !strings.Contains(line, "end=heartbeat_timeout") {
		t.Errorf("the frozen client's session ended otherwise: %s", line)
	}
	// The client sent its last heartbeat before it was stopped: 3 heartbeats (6 s) after that at
	// the latest, amqplb closes; the log poll adds a little.
	if took > 8*time.Second {
		t.Errorf("the frozen client was closed %v after SIGSTOP, want within 8s", took)
	}
	// The healthy client holds its connection for 60 s, with heartbeats only.
	select {
	case line, ok := <-healthy.lines:
		if !ok || line != "alive" {
			t.Fatalf("the healthy idle client: %q", line)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the healthy client did not finish its 60 s")
	}
	if line := waitLog(t, l, 1, "connection_name=healthy-idle"); !strings.Contains(line, "end=client_closed") {
		t.Errorf("the healthy client's session did not end by its own close: %s", line)
	}
}
