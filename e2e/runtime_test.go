package e2e

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// Issue 14, item 1: the operations scripts written for HAProxy's runtime API (socat on the
// stats socket) drive amqplb in front of a real cluster. (The haproxy.cfg form, stats socket,
// is config/haproxycfg's corpus file 20-runtime-socket.cfg.)

// socat runs `echo LINE | socat stdio SOCKET`, as operators and scripts do.
func socat(t testing.TB, sock, line string) string {
	t.Helper()
	bin, err := exec.LookPath("socat")
	if err != nil {
		if os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1" {
			t.Fatal("socat is not installed (scripts/install-test-deps.sh installs it)")
		}
		t.Skip("socat is not installed")
	}
	cmd := exec.Command(bin, "stdio", sock)
	cmd.Stdin = strings.NewReader(line + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("echo %q | socat stdio %s: %v\n%s", line, sock, err, out)
	}
	return string(out)
}

// statRows parses show stat's CSV: the rows by "pxname/svname", each a map by column.
func statRows(t testing.TB, out string) map[string]map[string]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(strings.TrimSpace(out), "# "))).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("show stat is not CSV (%v):\n%s", err, out)
	}
	rows := map[string]map[string]string{}
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, col := range recs[0] {
			row[col] = r[i]
		}
		rows[row["pxname"]+"/"+row["svname"]] = row
	}
	return rows
}

func TestRuntimeSocketDrivesRealCluster(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l := startLB(t, setup{servers: nodesAsServers(c), check: fastChecks,
		admin: fmt.Sprintf("socket = %q\nsocket_mode = \"600\"\nsocket_level = \"admin\"", sock)})
	for _, n := range c.Nodes {
		l.waitEligible(t, n.Name, 15*time.Second)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stats socket %s: %v, %v; want mode 0600", sock, fi, err)
	}
	first := c.Nodes[0].Name

	// disable server: the admin API says maint, and new connections go to the others.
	if out := socat(t, sock, "disable server rabbitmq/"+first); out != "\n" {
		t.Fatalf("disable server answered %q", out)
	}
	if s := l.servers(t)[first]; s.State != "maint" {
		t.Fatalf("/api/v1/backends says %s is %q after disable server, want maint", first, s.State)
	}
	props := amqp.Table{"connection_name": "runtime-e2e"}
	var conns []*amqp.Connection
	for range 4 {
		conn, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), Properties: props})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		t.Cleanup(func() { conn.Close() })
	}
	want := zeroCounts(c)
	for _, n := range c.Nodes[1:] {
		want[n.Name] = 4 / (len(c.Nodes) - 1)
	}
	waitCounts(t, c, want)

	// show stat: HAProxy's CSV, the disabled server MAINT with no session.
	rows := statRows(t, socat(t, sock, "show stat"))
	if r := rows["rabbitmq/"+first]; r["status"] != "MAINT" || r["scur"] != "0" {
		t.Errorf("show stat row of %s: status %q scur %q, want MAINT 0", first, r["status"], r["scur"])
	}
	if r := rows["rabbitmq/BACKEND"]; r["scur"] != "4" || r["status"] != "UP" {
		t.Errorf("show stat BACKEND row: scur %q status %q, want 4 UP", r["scur"], r["status"])
	}
	// show servers state: the disabled server's admin state is HAProxy's forced maintenance.
	state := socat(t, sock, "show servers state rabbitmq")
	var found bool
	for _, line := range strings.Split(state, "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[3] == first {
			found = true
			if f[6] != "1" {
				t.Errorf("show servers state: %s has srv_admin_state %s, want 1 (SRV_ADMF_FMAINT)", first, f[6])
			}
		}
	}
	if !found {
		t.Errorf("show servers state has no line for %s:\n%s", first, state)
	}
	// show sess: one line per session, with the client's identity.
	sess := strings.Split(strings.TrimSpace(socat(t, sock, "show sess")), "\n")
	if len(sess) != 4 {
		t.Fatalf("show sess: %d lines, want 4:\n%s", len(sess), strings.Join(sess, "\n"))
	}
	for _, line := range sess {
		if !strings.Contains(line, `user="guest" vhost="/" name="runtime-e2e"`) || strings.Contains(line, "srv="+first+" ") {
			t.Errorf("show sess line %q: want the guest's identity, and no session on %s", line, first)
		}
	}

	// set server ... state ready, then several commands on one line as scripts send them.
	if out := socat(t, sock, "set server rabbitmq/"+first+" state ready;set server rabbitmq/"+first+" weight 50%;get weight rabbitmq/"+first); out != "\n\n0 (initial 1)\n\n" {
		t.Errorf("ready;weight 50%%;get weight answered %q", out)
	}
	l.waitEligible(t, first, 10*time.Second)
	if out := socat(t, sock, "set weight rabbitmq/"+first+" 1;frobnicate"); !strings.HasPrefix(out, "\nUnknown command") {
		t.Errorf("an unknown command after a known one: %q", out)
	}
	if names := slices.Sorted(func(yield func(string) bool) {
		for k := range statRows(t, socat(t, sock, "show stat -1 4 -1")) {
			if !yield(k) {
				return
			}
		}
	}); len(names) != len(c.Nodes) {
		t.Errorf("show stat -1 4 -1 lists %v, want the %d servers", names, len(c.Nodes))
	}
	for _, conn := range conns {
		conn.Close()
	}
	waitCounts(t, c, zeroCounts(c))
	if err := l.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the stats socket is left after amqplb stopped: %v", err)
	}
}

// Issue 14, item 6: stats admin if TRUE gives the stats page its buttons: their POST (behind
// the section's auth) drains a server, which the admin API then shows and new connections avoid.
func TestStatsAdminDrainsRealServer(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	addr, stats := testenv.FreeAddr(t), testenv.FreeAddr(t)
	first, second := c.Nodes[0], c.Nodes[1]
	cfg := fmt.Sprintf(`listen rabbitmq
    bind %s
    mode tcp
    balance first
    server %s %s check inter 500ms
    server %s %s check inter 500ms

listen stats
    bind %s
    mode http
    stats enable
    stats uri /stats
    stats auth ops:s3cret
    stats admin if TRUE
`, addr, first.Name, first.AMQPAddr(), second.Name, second.AMQPAddr(), stats)
	l := startLBFile(t, "stats-admin.cfg", cfg, addr)
	l.waitEligible(t, first.Name, 15*time.Second)
	l.waitEligible(t, second.Name, 15*time.Second)
	post := func(user string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+stats+"/api/v1/backends/rabbitmq/servers/"+first.Name+"/state",
			strings.NewReader(`{"state":"drain"}`))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != http.StatusUnauthorized {
		t.Fatalf("the page's drain without credentials: %d, want 401", code)
	}
	if code := post("ops"); code != http.StatusOK {
		t.Fatalf("the page's drain: %d", code)
	}
	if s := l.servers(t)[first.Name]; s.State != "drain" {
		t.Fatalf("/api/v1/backends says %s is %q, want drain", first.Name, s.State)
	}
	for range 2 {
		l.dial(t) // balance first: the drained first server is skipped
	}
	want := zeroCounts(c)
	want[second.Name] = 2
	waitCounts(t, c, want)
}
