// Package e2e holds amqplb's end-to-end tests: the amqplb binary, built once per run, in front of
// a real RabbitMQ cluster that `make test` boots (see internal/testenv), driven with the
// amqp091-go client as users drive it, and judged by what the brokers themselves report.
package e2e
