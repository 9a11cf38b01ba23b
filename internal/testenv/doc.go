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
package testenv
