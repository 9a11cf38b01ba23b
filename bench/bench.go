// Package bench owns amqplb-bench's workloads (pubsub, storm, bulk, hold, failover, rolling) and their
// reports (the comparison table, JSON and SVG charts). It measures targets (brokers directly,
// amqplb, HAProxy) from the outside, as a client does: it imports nothing of amqplb's own
// packages, so the same figures can be taken of any AMQP endpoint.
//
// A Workload runs once against one Target and returns Figures. RunRounds runs it against every
// target in alternating rounds (A B C A B C ...), so that a noisy machine slows every target
// alike, and the Report gives each figure's median, min and max per target and its ratio to the
// first target.
package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Target is an endpoint to measure.
type Target struct {
	// Name labels the target in reports ("direct", "amqplb", "haproxy").
	Name string
	// Addr is host:port.
	Addr string
}

// ParseTarget parses NAME=HOST:PORT, or a bare HOST:PORT named after itself.
func ParseTarget(s string) (Target, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		name, addr = s, s
	}
	if name == "" {
		return Target{}, fmt.Errorf("target %q: empty name", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Target{}, fmt.Errorf("target %q: want NAME=HOST:PORT or HOST:PORT: %v", s, err)
	}
	return Target{Name: name, Addr: addr}, nil
}

// Figure is one named measurement of a round, with its unit and whether more is better (for
// the ratio column and the charts).
type Figure struct {
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Higher bool    `json:"higher_is_better"`
}

// Figures are what one round of a workload measured, in a stable order.
type Figures []Figure

// Get returns the value of the figure called name.
func (fs Figures) Get(name string) (float64, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

// Workload is one kind of measurement.
type Workload interface {
	// Name is the subcommand: pubsub, storm, bulk, hold, failover or rolling.
	Name() string
	// Run measures t once. Progress lines (per-second rates, ...) go to progress. An error means
	// the target could not be measured (unreachable, refused): it is reported as such, never as
	// a round of zeros.
	Run(ctx context.Context, t Target, progress io.Writer) (Figures, error)
}

// UnreachableError says a target could not be measured at all.
type UnreachableError struct {
	Target Target
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("target %s (%s) is unreachable: %v", e.Target.Name, e.Target.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// DefaultDialTimeout bounds the TCP connect, and separately the AMQP handshake, of every AMQP
// connection a workload opens when it sets no timeout of its own, so that an unreachable or
// silent target fails a round in seconds.
const DefaultDialTimeout = 5 * time.Second

// AMQPURL returns t's URL with RabbitMQ's default account (guest:guest, which RabbitMQ accepts
// from loopback only) and vhost "/".
func (t Target) AMQPURL() string { return "amqp://guest:guest@" + t.Addr + "/" }

// DialAMQP opens an AMQP connection to t (see AMQPURL). The TCP connect is bounded by timeout
// (0 means DefaultDialTimeout) and by ctx; the AMQP handshake by timeout again. name is shown
// as the connection's name in RabbitMQ's management UI.
func DialAMQP(ctx context.Context, t Target, name string, timeout time.Duration) (*amqp.Connection, error) {
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	return amqp.DialConfig(t.AMQPURL(), amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start after the handshake: until then only a deadline stops a
			// target that accepts and stays silent. amqp091 clears it once open.
			if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	})
}
