package testenv

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StateFileName is the name of the file, in a cluster's directory, that
// describes the cluster (JSON of Cluster). AMQPLB_TEST_CLUSTER points at it.
const StateFileName = "cluster.json"

// nodeUser is the OS user nodes run as when the cluster is started by root:
// Debian's package owns its files and Erlang refuses a cookie of another user.
const nodeUser = "rabbitmq"

// ErrClusterRunning is returned by StartCluster when the directory already
// holds a cluster with a live process.
var ErrClusterRunning = errors.New("a cluster is already running in this directory")

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Dir holds everything of the cluster: cluster.json, the Erlang cookie
	// (home/), and one directory per node. Required. Created when missing; a
	// stopped cluster's node data in it is wiped, its logs are appended to.
	Dir string
	// Nodes is the number of nodes; 0 means len(Ports), or 3 without Ports.
	Nodes int
	// Ports optionally fixes the nodes' AMQP ports (one per node). Other ports
	// (management, prometheus, distribution, epmd) are always free loopback
	// ports picked at start.
	Ports []int
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// ProxyProtocol makes every listener of every node expect a PROXY protocol
	// header before anything else (rabbitmq.conf proxy_protocol = true).
	ProxyProtocol bool
	// TLS, when set, adds a TLS listener on 127.0.0.1:Node.TLSPort to every
	// node, serving this certificate (client certificates are not required).
	TLS *TLSFiles
	// RabbitMQ is the version the nodes run: RabbitMQ310 ("" too), the host's Debian 12
	// package, or RabbitMQ40, Debian 13's 4.0.5 run with chroot from a root that StartCluster
	// builds first when it is missing (EnsureRoot; about a minute, once per machine). 4.0 nodes
	// need root.
	RabbitMQ string
	// Root is the root file system of a 4.0 cluster; "" means DefaultRoot(RabbitMQ).
	Root string
	// NetNS runs the nodes, their epmd and every rabbitmqctl for them in that network
	// namespace (made by the caller with `ip netns add NAME`, its loopback up). Host is then
	// required: the namespace's address, where the nodes listen (epmd and Erlang distribution
	// stay on the namespace's loopback). For network faults on a real node: cut or slow the
	// namespace's link and the node is unreachable or slow, as a node on another host would be.
	NetNS, Host string
}

// TLSFiles are PEM files for a node's TLS listener. They are copied into the
// node's directory, so the node's user can read them.
type TLSFiles struct {
	// CACert, Cert and Key are paths of PEM files.
	CACert, Cert, Key string
}

// Cluster is a set of RabbitMQ nodes clustered together, on this machine's
// loopback, with an epmd of its own. Its JSON form is cluster.json.
type Cluster struct {
	// Nodes are the cluster's nodes; the first is the one the others joined.
	Nodes []*Node `json:"nodes"`
	// Dir is the cluster's directory.
	Dir string `json:"dir"`
	// EPMDPort is the port of the cluster's epmd (ERL_EPMD_PORT).
	EPMDPort int `json:"epmd_port"`

	epmdKeeper *os.Process
}

// Version returns the RabbitMQ version of the cluster's nodes (RabbitMQ310 or RabbitMQ40).
func (c *Cluster) Version() string {
	if len(c.Nodes) == 0 || c.Nodes[0].Version == "" {
		return RabbitMQ310
	}
	return c.Nodes[0].Version
}

// StateFile returns the path of the cluster's cluster.json.
func (c *Cluster) StateFile() string { return filepath.Join(c.Dir, StateFileName) }

// Node returns the node with short name name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Running reports whether any process of the cluster (a node or its epmd) is
// alive.
func (c *Cluster) Running() bool {
	for _, n := range c.Nodes {
		if n.Running() {
			return true
		}
	}
	pg, err := readPIDFile(c.epmdPGIDFile())
	return err == nil && groupAlive(pg)
}

func (c *Cluster) epmdPGIDFile() string { return filepath.Join(c.Dir, "epmd.pgid") }

// LoadCluster reads a cluster.json written by StartCluster.
func LoadCluster(stateFile string) (*Cluster, error) {
	b, err := os.ReadFile(stateFile)
	if err != nil {
		return nil, fmt.Errorf("load cluster: %w", err)
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("load cluster %s: %w", stateFile, err)
	}
	if len(c.Nodes) == 0 {
		return nil, fmt.Errorf("load cluster %s: no nodes", stateFile)
	}
	return &c, nil
}

// StartCluster boots a cluster in o.Dir: node 1 first, then each other node in
// turn boots, stops its app, joins node 1 and starts its app again (booting
// nodes together can crash on feature flags). It returns once every node serves
// AMQP and its management API. cluster.json is written before the first node
// boots, so Stop (or `rabbitcluster down`) cleans up after a failed start too;
// StartCluster itself stops what it started when it fails. On a directory whose
// cluster is running it fails with ErrClusterRunning.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	c, err := prepareCluster(ctx, o, logw)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := c.boot(ctx, logw); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", stopErr))
		}
		return nil, err
	}
	fmt.Fprintf(logw, "cluster of %d nodes up in %v\n", len(c.Nodes), time.Since(t0).Round(100*time.Millisecond))
	return c, nil
}

// prepareCluster checks the machine (building the root of a 4.0 cluster when it is missing),
// picks ports and writes every file.
func prepareCluster(ctx context.Context, o ClusterOptions, logw io.Writer) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("start cluster: no directory")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	count := o.Nodes
	if count == 0 {
		count = len(o.Ports)
	}
	if count == 0 {
		count = 3
	}
	if len(o.Ports) != 0 && len(o.Ports) != count {
		return nil, fmt.Errorf("start cluster: %d AMQP ports for %d nodes", len(o.Ports), count)
	}
	if (o.NetNS == "") != (o.Host == "") {
		return nil, errors.New("start cluster: NetNS and Host go together")
	}
	version, err := normVersion(o.RabbitMQ)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	if old, err := LoadCluster(filepath.Join(dir, StateFileName)); err == nil && old.Running() {
		return nil, fmt.Errorf("start cluster in %s: %w (stop it first)", dir, ErrClusterRunning)
	}
	root := ""
	if version != RabbitMQ310 {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("start cluster: RabbitMQ %s nodes run with chroot, which needs root", version)
		}
		if root, err = EnsureRoot(ctx, version, o.Root, logw); err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		if dir == root || strings.HasPrefix(dir, root+"/") {
			return nil, fmt.Errorf("start cluster: directory %s is inside the root %s", dir, root)
		}
	} else if _, err := os.Stat(serverPath); err != nil {
		return nil, fmt.Errorf("start cluster: RabbitMQ not installed (%w); run scripts/install-test-deps.sh", err)
	}

	uid, gid, userName := -1, -1, ""
	if root != "" {
		if uid, gid, err = rootIDs(root); err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		userName = nodeUser
	} else if os.Geteuid() == 0 {
		u, err := user.Lookup(nodeUser)
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w (the rabbitmq-server package creates it)", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		userName = nodeUser
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if uid >= 0 {
		// The node's user must reach its directories below ours.
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}

	for _, p := range o.Ports {
		if !portFree(p) {
			return nil, fmt.Errorf("start cluster: AMQP port %d is in use", p)
		}
		ports.reserve(p)
	}
	c := &Cluster{Dir: dir}
	if c.EPMDPort, err = ports.port(); err != nil {
		return nil, err
	}

	home := filepath.Join(dir, "home")
	if err := writeCookie(home, uid, gid); err != nil {
		return nil, err
	}
	for i := range count {
		n := &Node{
			Name:     fmt.Sprintf("rmq%d", i+1),
			EPMDPort: c.EPMDPort,
			Home:     home,
			User:     userName,
			NetNS:    o.NetNS,
			Host:     o.Host,
		}
		n.NodeName = "amqplb-" + n.Name + "@localhost"
		n.ProxyProtocol = o.ProxyProtocol
		if root != "" {
			n.Version, n.Root = version, root
		}
		n.Dir = filepath.Join(dir, n.Name)
		if len(o.Ports) > 0 {
			n.AMQPPort = o.Ports[i]
		} else if n.AMQPPort, err = ports.port(); err != nil {
			return nil, err
		}
		if n.ManagementPort, err = ports.port(); err != nil {
			return nil, err
		}
		if n.PrometheusPort, err = ports.port(); err != nil {
			return nil, err
		}
		if n.DistPort, err = ports.dist(); err != nil {
			return nil, err
		}
		if o.TLS != nil {
			if n.TLSPort, err = ports.port(); err != nil {
				return nil, err
			}
		}
		if err := writeNodeFiles(n, o.TLS, uid, gid); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	if uid >= 0 {
		if err := checkReachable(c.Nodes[0].Dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	return c, nil
}

// boot starts epmd and the nodes.
func (c *Cluster) boot(ctx context.Context, logw io.Writer) error {
	if err := c.startEPMD(); err != nil {
		return err
	}
	first := c.Nodes[0]
	for i, n := range c.Nodes {
		t0 := time.Now()
		if err := n.Start(ctx); err != nil {
			return err
		}
		fmt.Fprintf(logw, "%s booted in %v\n", n.Name, time.Since(t0).Round(100*time.Millisecond))
		if i == 0 {
			continue
		}
		t1 := time.Now()
		if err := n.StopApp(ctx); err != nil {
			return err
		}
		if _, err := n.Rabbitmqctl(ctx, "join_cluster", first.NodeName); err != nil {
			return err
		}
		if err := n.StartApp(ctx); err != nil {
			return err
		}
		fmt.Fprintf(logw, "%s joined %s in %v\n", n.Name, first.Name, time.Since(t1).Round(100*time.Millisecond))
	}
	return nil
}

func (c *Cluster) startEPMD() error {
	epmd, err := exec.LookPath("epmd")
	if err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	first := c.Nodes[0]
	uid, gid, err := first.ids()
	if err != nil {
		return err
	}
	epmdAddrs := "127.0.0.1"
	if first.Host != "" {
		epmdAddrs += "," + first.Host
	}
	_, keeper, err := spawnKept(keeperSpec{
		Argv:    []string{epmd, "-port", strconv.Itoa(c.EPMDPort), "-address", epmdAddrs},
		Dir:     c.Dir,
		UID:     uid,
		GID:     gid,
		Log:     filepath.Join(c.Dir, "epmd.log"),
		PGIDOut: c.epmdPGIDFile(),
		SelfOut: filepath.Join(c.Dir, "epmd-keeper.pid"),
		NetNS:   first.NetNS,
	}, os.Environ(), filepath.Join(c.Dir, "keeper.log"))
	if err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	c.epmdKeeper = keeper
	// Seen from here: in a namespace, at its address.
	addr := net.JoinHostPort(first.host(), strconv.Itoa(c.EPMDPort))
	for deadline := time.Now().Add(5 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("epmd on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.StateFile(), append(b, '\n'))
}

// Stop stops every node (rabbitmqctl stop, then SIGKILL after 30 s) and the
// cluster's epmd, and checks that none of the cluster's ports is still bound. It
// can be called again (`rabbitcluster down` twice): there is nothing left to
// stop, and no mount to undo (a 4.0 node's mounts die with its processes).
// Paused nodes are resumed first. It removes nothing: data, logs and
// cluster.json stay for inspection (a later StartCluster in the same directory
// wipes the node data).
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.stop(ctx) })
	}
	wg.Wait()
	errs = append(errs, c.stopEPMD())

	var busy []string
	for _, n := range c.Nodes {
		for _, p := range []int{n.AMQPPort, n.ManagementPort, n.PrometheusPort, n.DistPort, n.TLSPort} {
			if p != 0 && !portFree(p) {
				busy = append(busy, strconv.Itoa(p))
			}
		}
	}
	if c.EPMDPort != 0 && !portFree(c.EPMDPort) {
		busy = append(busy, strconv.Itoa(c.EPMDPort))
	}
	if root := c.Nodes[0].Root; root != "" && !c.Running() {
		// The nodes' mounts lived in their own mount namespaces, gone with them; only the
		// (empty) mount point is left to remove.
		removeMountPoint(root, c.Dir)
	}
	if len(busy) > 0 {
		errs = append(errs, fmt.Errorf("ports still bound after stop: %s", strings.Join(busy, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop cluster %s: %w", c.Dir, err)
	}
	return nil
}

// stop stops one node gracefully, then kills what is left.
func (n *Node) stop(ctx context.Context) error {
	if !n.Running() {
		return n.Kill() // reaps our keeper, removes a stale pid file
	}
	_ = n.Resume()
	pg, _ := n.pgid()
	if _, err := n.Rabbitmqctl(ctx, "stop"); err == nil {
		// `stop` returns when the node has been told; the VM exits soon after.
		_ = waitGroupGone(pg, 10*time.Second)
	}
	return n.Kill()
}

func (c *Cluster) stopEPMD() error {
	pg, err := readPIDFile(c.epmdPGIDFile())
	if err != nil || !groupAlive(pg) {
		c.epmdKeeper = nil
		return nil
	}
	if err := killGroup(pg, sigKill); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill epmd: %w", err)
	}
	if err := waitGroupGone(pg, 10*time.Second); err != nil {
		return fmt.Errorf("kill epmd: %w", err)
	}
	err = waitKeeperGone(filepath.Join(c.Dir, "epmd-keeper.pid"), c.epmdKeeper, 10*time.Second)
	c.epmdKeeper = nil
	return err
}

// writeCookie gives the cluster an Erlang cookie of its own, so no node or CLI
// of another cluster (or the system's node) can talk to it.
func writeCookie(home string, uid, gid int) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	path := filepath.Join(home, ".erlang.cookie")
	if _, err := os.Stat(path); err != nil {
		const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		b := make([]byte, 20)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		_ = os.Remove(path)
		if err := os.WriteFile(path, b, 0o400); err != nil {
			return err
		}
	}
	if uid >= 0 {
		for _, p := range []string{home, path} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeNodeFiles wipes a node's previous data and writes its configuration.
func writeNodeFiles(n *Node, tlsFiles *TLSFiles, uid, gid int) error {
	for _, p := range []string{"mnesia", "feature_flags", "rabbitmq.pid", "node.pgid"} {
		if err := os.RemoveAll(filepath.Join(n.Dir, p)); err != nil {
			return err
		}
	}
	for _, d := range []string{n.Dir, filepath.Join(n.Dir, "mnesia"), filepath.Join(n.Dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	host := n.host()
	conf := fmt.Sprintf(`# Written by amqplb internal/testenv for node %s.
listeners.tcp.1 = %s:%d
loopback_users = none
management.tcp.ip = %s
management.tcp.port = %d
prometheus.tcp.ip = %s
prometheus.tcp.port = %d
# Fresher management API statistics for tests that read them.
collect_statistics_interval = 500
# A node paused past net_ticktime partitions the cluster; heal without a human.
cluster_partition_handling = autoheal
log.console = false
log.file.level = info
`, n.Name, host, n.AMQPPort, host, n.ManagementPort, host, n.PrometheusPort)
	if n.ProxyProtocol {
		conf += "proxy_protocol = true\n"
	}
	files := map[string]string{}
	if tlsFiles != nil {
		for name, src := range map[string]string{"ca.pem": tlsFiles.CACert, "cert.pem": tlsFiles.Cert, "key.pem": tlsFiles.Key} {
			b, err := os.ReadFile(src)
			if err != nil {
				return fmt.Errorf("node %s: TLS file: %w", n.Name, err)
			}
			files[name] = string(b)
		}
		conf += fmt.Sprintf(`listeners.ssl.1 = %s:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
`, host, n.TLSPort, filepath.Join(n.Dir, "ca.pem"), filepath.Join(n.Dir, "cert.pem"), filepath.Join(n.Dir, "key.pem"))
	}
	for name, content := range map[string]string{
		"rabbitmq.conf":     conf,
		"enabled_plugins":   "[rabbitmq_management,rabbitmq_prometheus].\n",
		"rabbitmq-env.conf": "# Empty on purpose: keeps /etc/rabbitmq/rabbitmq-env.conf out.\n",
	} {
		files[name] = content
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if uid < 0 {
		return nil
	}
	return filepath.WalkDir(n.Dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// checkReachable fails when the node's user cannot write dir (typically a
// parent directory that is not searchable, like a 0700 temporary directory).
func checkReachable(dir string, uid, gid int) error {
	cmd := exec.Command("/bin/sh", "-c", `test -w "$0"`, dir)
	runAs(cmd, uid, gid, false)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start cluster: user %s cannot write %s (is a parent directory not searchable?)", nodeUser, dir)
	}
	return nil
}
