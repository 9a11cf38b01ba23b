// Package faults is amqplb's fault matrix: tests only. Each test runs the amqplb binary (and,
// where a comparison makes sense, Debian's HAProxy with equivalent checks) in front of a real
// 3-node RabbitMQ cluster (internal/testenv), keeps connect+publish-with-confirm clients going
// through it, injects one fault (a signal, `rabbitmq-upgrade drain`, a stopped vhost, an alarm,
// a reload, a network fault on a real node in a network namespace of the test's own, …), undoes
// it, and records what the clients saw and when amqplb noticed.
//
// The tests run only with AMQPLB_FAULTS=1 (and AMQPLB_TEST_CLUSTER, plus AMQPLB_TEST_CLUSTER_4
// for the rows that also run on RabbitMQ 4.0); `make faults` sets them, boots the clusters and
// writes the table to faults/results.md (AMQPLB_FAULTS_RESULTS); `make test` runs the same rows
// on its own clusters.
package faults
