package testenv

import (
	"context"
)

// upgradePath is rabbitmq-upgrade in Debian's rabbitmq-server package (and in a root's).
const upgradePath = "/usr/lib/rabbitmq/bin/rabbitmq-upgrade"

// RabbitmqUpgrade runs `rabbitmq-upgrade -n NODENAME args...` as the node's user with the
// cluster's cookie (in the node's root for a 4.0 node), as Rabbitmqctl runs rabbitmqctl, and
// returns its standard output. A failure carries the standard error.
func (n *Node) RabbitmqUpgrade(ctx context.Context, args ...string) (string, error) {
	return n.cli(ctx, upgradePath, args...)
}

// Drain puts the node into maintenance mode (`rabbitmq-upgrade drain`): its client
// connections are closed (0-9-1: 320 CONNECTION_FORCED), its AMQP, management and Prometheus
// listeners are suspended (connections refused) and it stays a running cluster member.
// Revive undoes it.
func (n *Node) Drain(ctx context.Context) error {
	_, err := n.RabbitmqUpgrade(ctx, "drain")
	return err
}

// Revive takes the node out of maintenance mode (`rabbitmq-upgrade revive`) and waits until it
// serves AMQP and its management API again.
func (n *Node) Revive(ctx context.Context) error {
	if _, err := n.RabbitmqUpgrade(ctx, "revive"); err != nil {
		return err
	}
	return n.waitServing(ctx)
}
