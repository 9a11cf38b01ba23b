// Package faults is amqplb's fault matrix: tests only. Each test runs the amqplb binary (and,
// where a comparison makes sense, Debian's HAProxy with equivalent checks) in front of a real
// 3-node RabbitMQ cluster (internal/testenv), keeps connect+publish-with-confirm clients going
// through it, injects one fault into the cluster (a signal, `rabbitmq-upgrade drain`, a memory
// alarm, a reload, …), undoes it, and records what the clients saw and when amqplb noticed.
//
// The tests run only with AMQPLB_FAULTS=1 (and AMQPLB_TEST_CLUSTER); `make faults` sets both,
// boots the cluster and writes the table to faults/results.md (AMQPLB_FAULTS_RESULTS).
package faults
