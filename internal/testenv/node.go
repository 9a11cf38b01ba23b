package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Paths of Debian's rabbitmq-server package. The server script is started
// directly, not through /usr/sbin/rabbitmq-server, whose su would cap the node's
// file descriptors at PAM's 1024.
const (
	serverPath = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	ctlPath    = "/usr/lib/rabbitmq/bin/rabbitmqctl"
)

// Node is one RabbitMQ node of a Cluster. Its fields are what cluster.json
// records: enough to find, signal, query and restart the node from any process.
// The guest user works on every node (loopback_users = none).
type Node struct {
	// Name is the short name, e.g. "rmq1".
	Name string `json:"name"`
	// NodeName is the Erlang node name, e.g. "amqplb-rmq1@localhost".
	NodeName string `json:"node_name"`
	// Host is the address the node's listeners (AMQP, TLS, management, prometheus) are on:
	// "" means 127.0.0.1; a node in a network namespace listens on the namespace's address.
	Host string `json:"host,omitempty"`
	// NetNS is the network namespace (/run/netns/NAME) the node, its epmd and its rabbitmqctl
	// run in; "" for the caller's own.
	NetNS string `json:"netns,omitempty"`
	// AMQPPort is the AMQP 0-9-1 listener on Host.
	AMQPPort int `json:"amqp_port"`
	// ManagementPort is the management plugin's HTTP API on Host.
	ManagementPort int `json:"management_port"`
	// PrometheusPort is the prometheus plugin's /metrics on Host.
	PrometheusPort int `json:"prometheus_port"`
	// DistPort is the Erlang distribution port on 127.0.0.1.
	DistPort int `json:"dist_port"`
	// Dir is the node's base directory: config, data (mnesia/), logs (log/),
	// pid files.
	Dir string `json:"dir"`
	// EPMDPort is the port of the cluster's own epmd.
	EPMDPort int `json:"epmd_port"`
	// Home is the HOME of the node and of rabbitmqctl; it holds the cluster's
	// Erlang cookie.
	Home string `json:"home"`
	// User is the OS user the node and rabbitmqctl run as ("rabbitmq" when the
	// cluster was started by root, "" for the caller's own user).
	User string `json:"user,omitempty"`

	// TLSPort is the node's TLS listener on Host, 0 when it has none.
	TLSPort int `json:"tls_port,omitempty"`
	// ProxyProtocol: every listener expects a PROXY protocol header first.
	ProxyProtocol bool `json:"proxy_protocol,omitempty"`

	// Version is the RabbitMQ version the node runs (RabbitMQ310 or RabbitMQ40); "" is 3.10.
	Version string `json:"version,omitempty"`
	// Root is the root file system the node and its rabbitmqctl run in (chroot), "" for the
	// host's own RabbitMQ. The cluster's directory is mounted at the same path inside it, and
	// User is the root's rabbitmq user (see chrootScript).
	Root string `json:"root,omitempty"`

	// keeper is the node's keeper when this process started it; Kill reaps it.
	keeper *os.Process
}

// AMQPAddr returns the node's AMQP address, "127.0.0.1:PORT" (HOST:PORT with a Host).
func (n *Node) AMQPAddr() string { return net.JoinHostPort(n.host(), strconv.Itoa(n.AMQPPort)) }

// host is where the node's listeners are.
func (n *Node) host() string {
	if n.Host == "" {
		return "127.0.0.1"
	}
	return n.Host
}

// URL returns the AMQP URL of the node for the guest user.
func (n *Node) URL() string { return "amqp://guest:guest@" + n.AMQPAddr() + "/" }

// ManagementURL returns the base URL of the node's management HTTP API,
// "http://HOST:PORT" (127.0.0.1 without a Host; user guest, password guest).
func (n *Node) ManagementURL() string {
	return "http://" + net.JoinHostPort(n.host(), strconv.Itoa(n.ManagementPort))
}

// PrometheusURL returns the URL of the node's Prometheus metrics.
func (n *Node) PrometheusURL() string {
	return "http://" + net.JoinHostPort(n.host(), strconv.Itoa(n.PrometheusPort)) + "/metrics"
}

// LogFile returns the path of the node's RabbitMQ log.
func (n *Node) LogFile() string { return filepath.Join(n.Dir, "log", n.NodeName+".log") }

func (n *Node) pidFile() string    { return filepath.Join(n.Dir, "rabbitmq.pid") }
func (n *Node) pgidFile() string   { return filepath.Join(n.Dir, "node.pgid") }
func (n *Node) keeperFile() string { return filepath.Join(n.Dir, "keeper.pid") }

// PID returns the pid of the node's beam.smp, from the pid file RabbitMQ writes
// while booting. It fails when the node has not written it (not started, or
// killed).
func (n *Node) PID() (int, error) {
	pid, err := readPIDFile(n.pidFile())
	if err != nil {
		return 0, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return pid, nil
}

// pgid returns the process group of the node's processes (the pid of the
// process the keeper started, which execs into beam.smp).
func (n *Node) pgid() (int, error) {
	pg, err := readPIDFile(n.pgidFile())
	if err != nil {
		return 0, fmt.Errorf("node %s not started: %w", n.Name, err)
	}
	return pg, nil
}

// Running reports whether the node's OS process is alive (possibly paused, or
// with the RabbitMQ application stopped).
func (n *Node) Running() bool {
	pg, err := n.pgid()
	if err != nil {
		return false
	}
	st := procState(pg)
	if st == 0 || st == 'Z' || st == 'X' {
		return false
	}
	// Guard against a recycled pid: the process must still be ours.
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pg))
	return bytes.Contains(cmdline, []byte("rabbit"))
}

// groupLives reports whether a process of the node's process group is still alive. Running
// alone can miss a node that is booting: its leader execs several times (the chroot script,
// chroot, env, the server script), and /proc/PID/cmdline reads empty in the middle of an exec.
func (n *Node) groupLives() bool {
	pg, err := n.pgid()
	return err == nil && groupAlive(pg)
}

// Paused reports whether the node's beam.smp is stopped by a signal.
func (n *Node) Paused() bool {
	pg, err := n.pgid()
	return err == nil && procState(pg) == 'T'
}

// Pause stops every process of the node with SIGSTOP. The kernel still completes
// TCP handshakes on its listeners (up to the backlog), but the broker never
// answers: an AMQP dial times out after connecting. Pausing a clustered node for
// longer than net_ticktime (60 s) makes its peers see a partition
// (cluster_partition_handling = autoheal resolves it after Resume).
func (n *Node) Pause() error {
	pg, err := n.pgid()
	if err != nil {
		return err
	}
	if err := killGroup(pg, sigStop); err != nil {
		return fmt.Errorf("pause %s: %w", n.Name, err)
	}
	for deadline := time.Now().Add(2 * time.Second); procState(pg) != 'T'; {
		if time.Now().After(deadline) {
			return fmt.Errorf("pause %s: process %d not stopped after 2s", n.Name, pg)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Resume continues a paused node with SIGCONT. It is harmless on a running node.
func (n *Node) Resume() error {
	pg, err := n.pgid()
	if err != nil {
		return err
	}
	if err := killGroup(pg, sigCont); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("resume %s: %w", n.Name, err)
	}
	return nil
}

// Kill sends SIGKILL to the node's processes and waits until they are all gone
// (so its ports are free). Killing a node that is not running is not an error.
func (n *Node) Kill() error {
	pg, err := n.pgid()
	killed := err == nil && groupAlive(pg)
	if killed {
		if err := killGroup(pg, sigKill); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %s: %w", n.Name, err)
		}
		if err := waitGroupGone(pg, 10*time.Second); err != nil {
			return fmt.Errorf("kill %s: %w", n.Name, err)
		}
	}
	// erl_child_setup and inet_gethost run in sessions of their own; they exit
	// when beam does, and the keeper exits once it has reaped them all. (A
	// keeper pid file left from an earlier run is not trusted: pids recycle.)
	err = nil
	if killed || n.keeper != nil {
		err = waitKeeperGone(n.keeperFile(), n.keeper, 10*time.Second)
	}
	n.keeper = nil
	_ = os.Remove(n.pidFile())
	if err != nil {
		return fmt.Errorf("kill %s: %w", n.Name, err)
	}
	return nil
}

// waitGroupGone waits until process group pg has no live member (a zombie that
// has finished exiting holds no port and counts as gone).
func waitGroupGone(pg int, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for groupAlive(pg) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still alive after %v", pg, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Start boots the node (again, after Kill or a cluster stop) with the same
// directories, ports and data, so it rejoins its cluster, and waits until it
// serves AMQP and its management API answers. When the node's process already
// runs, Start only waits for it to serve (use StartApp after StopApp). If the
// node was not the last of its cluster to stop, RabbitMQ waits (up to 5 minutes)
// for a peer that was.
func (n *Node) Start(ctx context.Context) error {
	if n.Running() {
		return n.waitServing(ctx)
	}
	uid, gid, err := n.ids()
	if err != nil {
		return err
	}
	_ = os.Remove(n.pidFile())
	if err := os.MkdirAll(filepath.Join(n.Dir, "log"), 0o755); err != nil {
		return err
	}
	if uid >= 0 {
		_ = os.Chown(filepath.Join(n.Dir, "log"), uid, gid)
	}
	spec := keeperSpec{
		Argv:    []string{serverPath},
		Dir:     n.Dir,
		UID:     uid,
		GID:     gid,
		Log:     filepath.Join(n.Dir, "log", "stdout.log"),
		PGIDOut: n.pgidFile(),
		SelfOut: n.keeperFile(),
		NetNS:   n.NetNS,
	}
	if n.Root != "" {
		// The mount point of the cluster's directory (a later cluster stop removes it).
		if err := os.MkdirAll(n.mountPoint(), 0o755); err != nil {
			return err
		}
		spec.Argv = n.chrootArgv(uid, gid, n.rootEnv(), spec.Argv)
		spec.UID, spec.GID, spec.NewMountNS = -1, -1, true // chroot drops to uid:gid
	}
	_, keeper, err := spawnKept(spec, n.env(), filepath.Join(n.Dir, "keeper.log"))
	if err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.keeper = keeper
	if err := n.waitServing(ctx); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	return nil
}

// StopApp runs `rabbitmqctl stop_app`: the Erlang node stays up (and in its
// cluster) but the broker closes its listeners and connections.
func (n *Node) StopApp(ctx context.Context) error {
	_, err := n.Rabbitmqctl(ctx, "stop_app")
	return err
}

// StartApp runs `rabbitmqctl start_app` and waits until the node serves AMQP
// and its management API answers.
func (n *Node) StartApp(ctx context.Context) error {
	if _, err := n.Rabbitmqctl(ctx, "start_app"); err != nil {
		return err
	}
	return n.waitServing(ctx)
}

// WaitReady waits until an AMQP handshake with the node succeeds, retrying every
// 100 ms (each attempt bounded by 2 s), or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	return n.waitFor(ctx, false)
}

// waitServing is WaitReady plus the management API, and fails early when the
// node's process dies.
func (n *Node) waitServing(ctx context.Context) error {
	return n.waitFor(ctx, true)
}

func (n *Node) waitFor(ctx context.Context, management bool) error {
	var last error
	for {
		if last = n.dialAMQP(ctx, 2*time.Second); last == nil && management {
			last = n.managementUp(ctx)
		}
		if last == nil {
			return nil
		}
		if management && !n.Running() && !n.groupLives() {
			return fmt.Errorf("node %s exited while booting: %v\n%s", n.Name, last, n.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w (last: %v)", n.Name, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dialAMQP opens and closes one AMQP connection, each step bounded by timeout.
func (n *Node) dialAMQP(ctx context.Context, timeout time.Duration) error {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), 10*time.Millisecond)
	}
	dial := amqp.DefaultDial(timeout)
	if n.ProxyProtocol {
		dial = func(network, addr string) (net.Conn, error) {
			c, err := amqp.DefaultDial(timeout)(network, addr)
			if err != nil {
				return nil, err
			}
			l, r := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
			if _, err := fmt.Fprintf(c, "PROXY TCP4 %s %s %d %d\r\n", l.IP, r.IP, l.Port, r.Port); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	conn, err := amqp.DialConfig(n.URL(), amqp.Config{Dial: dial})
	if err != nil {
		return err
	}
	return conn.Close()
}

func (n *Node) managementUp(ctx context.Context) error {
	var v map[string]any
	return n.getJSON(ctx, "/api/overview", &v)
}

// getJSON GETs path from the node's management API as guest.
func (n *Node) getJSON(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.ManagementURL()+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

// ConnectionCount returns the number of client connections open on this node as
// the broker sees them: the rabbitmq_connections gauge of the node's own
// Prometheus endpoint, which reads the node's connection table on each scrape.
// It follows an open or a close within about 50 ms (the management API's
// /api/connections lags up to 5 s). It fails while the node is paused.
func (n *Node) ConnectionCount(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.PrometheusURL(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("connections of %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("connections of %s: GET %s: %s", n.Name, n.PrometheusURL(), resp.Status)
	}
	count, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "rabbitmq_connections")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("connections of %s: bad sample %q", n.Name, sc.Text())
		}
		count += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("connections of %s: %w", n.Name, err)
	}
	if !found {
		return 0, fmt.Errorf("connections of %s: no rabbitmq_connections in %s", n.Name, n.PrometheusURL())
	}
	return int(count), nil
}

// Rabbitmqctl runs `rabbitmqctl -n NODENAME args...` as the node's user with the
// cluster's cookie, and returns its standard output. A failure carries the
// standard error. CLI start-up alone takes about a second.
func (n *Node) Rabbitmqctl(ctx context.Context, args ...string) (string, error) {
	return n.cli(ctx, ctlPath, args...)
}

// cli runs one of RabbitMQ's command-line tools (path) with `-n NODENAME args...` as the node's
// user with the cluster's cookie (in the node's root for a 4.0 node), and returns its standard
// output. A failure carries the standard error.
func (n *Node) cli(ctx context.Context, path string, args ...string) (string, error) {
	uid, gid, err := n.ids()
	if err != nil {
		return "", err
	}
	argv := append([]string{path, "-n", n.NodeName}, args...)
	if n.Root != "" {
		argv = n.chrootArgv(uid, gid, n.rootEnv(), argv)
		uid, gid = -1, -1 // chroot drops to the root's rabbitmq user
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = n.Dir
	cmd.Env = n.env()
	runAs(cmd, uid, gid, true)
	if n.Root != "" {
		if err := newMountNS(cmd); err != nil {
			return "", err
		}
	}
	// The CLI is an Erlang VM of its own; on cancel take its whole group.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, sigKill) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = startIn(n.NetNS, cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s -n %s %s: %w: %s", filepath.Base(path), n.NodeName, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.String(), nil
}

// ids returns the uid and gid to run the node's processes as; -1 for the
// caller's own.
func (n *Node) ids() (uid, gid int, err error) {
	if n.User == "" {
		return -1, -1, nil
	}
	if n.Root != "" {
		return rootIDs(n.Root)
	}
	u, err := user.Lookup(n.User)
	if err != nil {
		return 0, 0, fmt.Errorf("node %s: %w", n.Name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// env returns the environment of the node and of rabbitmqctl for it: the
// caller's, less anything RabbitMQ or Erlang would read, plus this node's.
func (n *Node) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RABBITMQ_") || strings.HasPrefix(name, "ERL_") ||
			name == "HOME" || name == "LANG" || strings.HasPrefix(name, "LC_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, n.nodeEnv()...)
}

// rootEnv is the whole environment of the node and of its rabbitmqctl inside its root.
func (n *Node) rootEnv() []string {
	return append([]string{rootPath}, n.nodeEnv()...)
}

// nodeEnv is what the node and rabbitmqctl for it read: the same paths inside a root and out.
func (n *Node) nodeEnv() []string {
	erlArgs := "-kernel inet_dist_use_interface {127,0,0,1}"
	if n.Root != "" {
		// No busy-waiting schedulers: the 4.0 nodes run next to the 3.10 ones on shared cores.
		erlArgs += " +sbwt none +sbwtdcpu none +sbwtdio none"
	}
	return []string{
		"HOME=" + n.Home,
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"ERL_EPMD_PORT=" + strconv.Itoa(n.EPMDPort),
		"RABBITMQ_NODENAME=" + n.NodeName,
		"RABBITMQ_USE_LONGNAME=false",
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(n.DistPort),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(n.Dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(n.Dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(n.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(n.Dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(n.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(n.Dir, "log"),
		"RABBITMQ_FEATURE_FLAGS_FILE=" + filepath.Join(n.Dir, "feature_flags"),
		"RABBITMQ_PID_FILE=" + n.pidFile(),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=" + erlArgs,
	}
}

// logTail returns the end of the node's logs, for error messages.
func (n *Node) logTail() string {
	var b strings.Builder
	for _, p := range []string{filepath.Join(n.Dir, "log", "stdout.log"), n.LogFile()} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "--- %s (tail)\n%s\n", p, data)
	}
	return b.String()
}

// Connection is a client connection as the node's management API shows it.
type Connection struct {
	// Name is the broker's name for it, "HOST:PORT -> HOST:PORT".
	Name string `json:"name"`
	// PeerHost and PeerPort are the client's address as the broker sees it:
	// with proxy_protocol, the one the PROXY header announced.
	PeerHost string `json:"peer_host"`
	PeerPort int    `json:"peer_port"`
	// SSL reports whether the client connected over TLS.
	SSL bool `json:"ssl"`
}

// Connections lists the node's client connections from its management API,
// which lags a few seconds behind opens and closes.
func (n *Node) Connections(ctx context.Context) ([]Connection, error) {
	var cs []Connection
	err := n.getJSON(ctx, "/api/connections", &cs)
	return cs, err
}
