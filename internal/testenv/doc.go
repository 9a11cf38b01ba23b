// Package testenv owns the real-RabbitMQ test environment of amqplb: it boots
// local RabbitMQ nodes and clusters on loopback ports (each node with its own
// directories, Erlang node name and ports, all clusters with their own epmd),
// describes a running cluster in a cluster.json file that tests load through
// RequireCluster, and gives tests the failure injections that only a real broker
// shows: pause (SIGSTOP), kill, restart, stop_app / start_app, and the broker's
// own count of its client connections.
//
// It must not be imported by production packages, and it never touches a
// RabbitMQ installation's own node, data or configuration: everything lives under
// the directory a caller names. Fake brokers for fast unit tests live in this
// package too (fakebroker.go).
//
// The processes of a cluster outlive the program that started them. Each one is
// run under a small keeper: the importing binary re-executed by this package's
// init function (see keeperEnv), a child subreaper that reaps the node's
// processes as they exit. So Kill can wait until a node is really gone, and no
// zombie lingers on machines whose PID 1 reaps orphans late.
//
// Two RabbitMQ versions run (ClusterOptions.RabbitMQ): 3.10, the host's Debian 12
// package, and 4.0, Debian 13's rabbitmq-server 4.0.5 on Erlang 27. A 4.0 node runs
// from a trixie root file system (EnsureRoot: debootstrap, built once per machine
// under /var/cache/amqplb/rootfs and kept) with chroot, as the root's rabbitmq user,
// under the same keeper, on loopback ports picked the same way, with the cluster's
// own epmd and cookie. Its /proc and the cluster's directory (mounted at the same
// path inside the root, so every path of a Node means the same inside and out) are
// mounted in a mount namespace of the node's own, so they disappear with its last
// process and nothing is ever left mounted on the host (see chrootScript). Running
// 4.0 nodes needs root.
package testenv
