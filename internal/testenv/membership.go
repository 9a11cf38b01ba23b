package testenv

import (
	"context"
	"fmt"
)

// Leave makes the node leave its cluster, as an operator removes a node: `rabbitmqctl stop_app`
// then `reset` (a clustered node that resets tells the others to forget it). The node's Erlang
// VM stays up with its broker stopped; Join brings it back. A test that calls it must call Join
// in a t.Cleanup: every test shares the cluster.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.StopApp(ctx); err != nil {
		return err
	}
	_, err := n.Rabbitmqctl(ctx, "reset")
	return err
}

// Join makes the node a member of first's cluster again and starts its broker: stop_app, and
// unless first already lists it, reset and join_cluster; then start_app, waiting until it
// serves AMQP and its management API. It is a no-op beyond start_app for a node that never
// left, so a test's clean-up can call it whatever happened.
func (n *Node) Join(ctx context.Context, first *Node) error {
	members, err := first.Members(ctx)
	if err != nil {
		return fmt.Errorf("join %s: %w", n.Name, err)
	}
	if _, member := members[n.NodeName]; !member {
		if err := n.StopApp(ctx); err != nil {
			return err
		}
		if _, err := n.Rabbitmqctl(ctx, "reset"); err != nil {
			return err
		}
		if _, err := n.Rabbitmqctl(ctx, "join_cluster", first.NodeName); err != nil {
			return err
		}
	}
	return n.StartApp(ctx)
}

// Members returns the cluster's members as the node's management API lists them
// (GET /api/nodes), each with whether its broker runs.
func (n *Node) Members(ctx context.Context) (map[string]bool, error) {
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := n.getJSON(ctx, "/api/nodes?columns=name,running", &nodes); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(nodes))
	for _, x := range nodes {
		out[x.Name] = x.Running
	}
	return out, nil
}
