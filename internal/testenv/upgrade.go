package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// upgradePath is rabbitmq-upgrade in Debian's rabbitmq-server package (and in a root's).
const upgradePath = "/usr/lib/rabbitmq/bin/rabbitmq-upgrade"

// RabbitmqUpgrade runs `rabbitmq-upgrade -n NODENAME args...` as the node's user with the
// cluster's cookie (in the node's root for a 4.0 node), as Rabbitmqctl runs rabbitmqctl, and
// returns its standard output. A failure carries the standard error.
func (n *Node) RabbitmqUpgrade(ctx context.Context, args ...string) (string, error) {
	uid, gid, err := n.ids()
	if err != nil {
		return "", err
	}
	argv := append([]string{upgradePath, "-n", n.NodeName}, args...)
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
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("rabbitmq-upgrade -n %s %s: %w: %s", n.NodeName, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.String(), nil
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
