//go:build linux

package faults

import (
	"context"
	"fmt"
	"testing"

	"github.com/amqplb/amqplb/internal/testenv"
)

// ejectBound is the bound for a hung or unreachable node: interval × fall + timeout.
const ejectBound = checkInterval*checkFall + checkTimeout

func TestNodeKilled(t *testing.T) {
	c := requireFaults(t)
	ejectRow{
		fault: "node killed", how: "SIGKILL to the node's process group (testenv Node.Kill)",
		goal:   "0 failed connects; node down ≤ one fast interval (500 ms) after the kill",
		victim: 2, state: "down", maxEject: checkFast, haproxy: true,
		inject: func(_ context.Context, n *testenv.Node) error { return n.Kill() },
		undo: func(ctx context.Context, n *testenv.Node) error {
			if n.Running() {
				return nil
			}
			return n.Start(ctx)
		},
	}.run(t, c)
}

func TestNodeHung(t *testing.T) {
	c := requireFaults(t)
	ejectRow{
		fault: "node hung", how: "SIGSTOP to the node's process group; undo SIGCONT",
		goal:   fmt.Sprintf("ejected ≤ interval×fall + timeout (%s); 0 failed connects after", ms(ejectBound)),
		victim: 1, state: "down", maxEject: ejectBound, haproxy: true,
		inject: func(_ context.Context, n *testenv.Node) error { return n.Pause() },
		undo:   func(_ context.Context, n *testenv.Node) error { return n.Resume() },
	}.run(t, c)
}

func TestMaintenance(t *testing.T) {
	c := requireFaults(t)
	var note string
	ejectRow{
		fault: "maintenance", how: "`rabbitmq-upgrade drain` (time to eject from its return); undo `rabbitmq-upgrade revive`",
		goal:   "drain (not down) within a check interval + timeout of the drain's return; 0 failed connects after",
		victim: 1, state: "drain", maxEject: checkInterval + checkTimeout, haproxy: true, fromReturn: true,
		inject: func(ctx context.Context, n *testenv.Node) error {
			// RabbitMQ 3.10.8's drain can fail (exit 69) when a client connection closes while
			// it closes them all; the node is then marked in maintenance with its listeners
			// suspended, and a second drain finishes the job.
			err := n.Drain(ctx)
			if err != nil {
				t.Logf("rabbitmq-upgrade drain failed, run again: %v", err)
				note = "the first drain failed (" + firstLine(err.Error()) + ") and was run again"
				err = n.Drain(ctx)
			}
			return err
		},
		undo: func(ctx context.Context, n *testenv.Node) error { return n.Revive(ctx) },
		note: func() string { return note },
	}.run(t, c)
}

// TestVHostDown stops one vhost's supervisor on one node (what RabbitMQ does itself when a vhost's
// message store fails there): the node still serves every other vhost, so a protocol-header check
// sees nothing, while amqplb's check opens the vhost and takes the node out with the broker's code.
func TestVHostDown(t *testing.T) {
	c := requireFaults(t)
	const vhost = "faults-vhost"
	ejectRow{
		fault: "vhost gone on one node", vhost: vhost,
		how:    "`rabbitmqctl eval 'rabbit_vhost_sup_sup:stop_and_delete_vhost(<<\"" + vhost + "\">>).'` on the node (its vhost supervisor stopped; time to eject from its return); undo `rabbitmqctl restart_vhost`",
		goal:   "that server down for type = \"amqp\" (checks open the vhost) with the broker's code; 0 failed connects after",
		victim: 1, state: "down", reason: "541", maxEject: ejectBound, haproxy: true, fromReturn: true,
		inject: func(ctx context.Context, n *testenv.Node) error {
			_, err := n.Rabbitmqctl(ctx, "eval", `rabbit_vhost_sup_sup:stop_and_delete_vhost(<<"`+vhost+`">>).`)
			return err
		},
		undo: func(ctx context.Context, n *testenv.Node) error {
			_, err := n.Rabbitmqctl(ctx, "restart_vhost", "-p", vhost)
			return err
		},
	}.run(t, c)
}

func TestMemoryAlarm(t *testing.T) {
	alarmRow(t, "memory", 0, "set_vm_memory_high_watermark", "0.0001", "0.4")
}

func TestDiskAlarm(t *testing.T) {
	alarmRow(t, "disk", 2, "set_disk_free_limit", "1000000GB", "50MB")
}

// alarmRow raises a resource alarm on one node with `rabbitmqctl CMD on` and clears it with
// `CMD off` (the default). amqplb must show it in the node's check reason and keep the node in
// rotation (eject_on_alarm is off). During the alarm the brokers block every publisher (the
// alarm is cluster-wide), so confirms time out through either balancer.
func alarmRow(t *testing.T, resource string, victim int, cmd, on, off string) {
	c := requireFaults(t)
	set := func(value string) func(context.Context, *testenv.Node) error {
		return func(ctx context.Context, n *testenv.Node) error {
			_, err := n.Rabbitmqctl(ctx, cmd, value)
			return err
		}
	}
	ejectRow{
		fault: resource + " alarm", how: fmt.Sprintf("`rabbitmqctl %s %s`; undo %s (the default)", cmd, on, off),
		goal:   "shown in the node's check reason; not ejected (eject_on_alarm off)",
		victim: victim, shown: "alarm: " + resource, mgmt: ", alarms = true", haproxy: true, hold: 3,
		inject: set(on), undo: set(off),
	}.run(t, c)
}
