//go:build linux

package faults

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// nsVictim puts a real RabbitMQ node in a namespace of its own in place of node 2: the rows'
// servers are node 1, that node (named rmq2-netns) and node 3.
func nsVictim(t *testing.T, c *testenv.Cluster) (*netns, *testenv.Cluster) {
	t.Helper()
	ns := newNetns(t)
	return ns, withNode(c, 1, ns.startNode(t, "rmq2-netns"))
}

// TestBlackHole: every packet into the namespace of the node behind it is dropped (iptables
// inside it, on its veth: the node's own loopback, its epmd and rabbitmqctl, keep working).
func TestBlackHole(t *testing.T) {
	c := requireFaults(t)
	ns, c := nsVictim(t, c)
	drop := []string{"iptables", "-w", "-I", "INPUT", "-i", ns.nsIf, "-j", "DROP"}
	ejectRow{
		fault: "network black hole to one node", how: "`ip netns exec NS iptables -I INPUT -i VETH -j DROP` in the namespace of a real node; undo -D",
		goal:   fmt.Sprintf("ejected ≤ interval×fall + timeout (%s); 0 failed connects after", ms(ejectBound)),
		victim: 1, state: "down", maxEject: ejectBound, haproxy: true,
		inject: func(context.Context, *testenv.Node) error { return ns.exec(drop...) },
		undo: func(context.Context, *testenv.Node) error {
			check, del := slices.Clone(drop), slices.Clone(drop)
			check[2], del[2] = "-C", "-D"
			for ns.exec(check...) == nil {
				if err := ns.exec(del...); err != nil {
					return err
				}
			}
			return nil
		},
	}.run(t, c)
}

// TestLinkDown: the namespace's end of the veth pair to a real node goes down.
func TestLinkDown(t *testing.T) {
	c := requireFaults(t)
	ns, c := nsVictim(t, c)
	ejectRow{
		fault: "link down to one node", how: "`ip netns exec NS ip link set VETH down` (the end in the namespace of a real node); undo up",
		goal:   fmt.Sprintf("ejected ≤ interval×fall + timeout (%s); 0 failed connects after", ms(ejectBound)),
		victim: 1, state: "down", maxEject: ejectBound, haproxy: true,
		inject: func(context.Context, *testenv.Node) error { return ns.exec("ip", "link", "set", ns.nsIf, "down") },
		undo: func(context.Context, *testenv.Node) error {
			if err := ns.exec("ip", "link", "set", ns.nsIf, "up"); err != nil {
				return err
			}
			// The namespace's address comes back with the link, its route too: nothing else to do.
			return nil
		},
	}.run(t, c)
}

// haproxyDowns returns HAProxy's count of UP→DOWN transitions of a server (chkdown).
func (h *haproxy) downs(server string) int {
	n, _ := strconv.Atoi(h.stat(server, "chkdown"))
	return n
}

// TestSlowLossyLink: 200 ms of delay and 5 % loss on the link of a real node in a namespace for
// 30 s. The checks' timeout is raised to 2.5 s and fall to 3 for this row, as an operator would
// for such a link (an AMQP check is 5 round trips). The node must not flap, and clients must be
// served. On a kernel without netem the balancers reach the node through a delaying relay (idle
// until the fault) and the loss is iptables' on the node's veth.
func TestSlowLossyLink(t *testing.T) {
	c := requireFaults(t)
	const hold = 30 * time.Second
	ns, c := nsVictim(t, c)
	victim := c.Nodes[1]
	cfg := lbConfig{noMgmt: true, timeout: 2500 * time.Millisecond, fall: 3}
	netem := run("tc", "qdisc", "add", "dev", ns.hostIf, "root", "netem", "delay", "0ms") == nil
	var rl *relay
	if netem {
		_ = run("tc", "qdisc", "del", "dev", ns.hostIf, "root")
	} else {
		rl = newRelay(t, victim.AMQPAddr())
		cfg.addrs = map[string]string{victim.Name: rl.addr}
	}
	l := startLB(t, c, cfg)
	h := startHAProxy(t, c, cfg)
	waitAllServing(t, l, c)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range c.Nodes {
			if h.status(n.Name) != "UP" {
				return fmt.Errorf("haproxy: %s is %q", n.Name, h.status(n.Name))
			}
		}
		return nil
	})
	wl, wh := startWatch(l.url(), 2), startWatch(h.url(), 2)
	t.Cleanup(wl.halt)
	t.Cleanup(wh.halt)
	began := time.Now()
	for _, w := range []*watch{wl, wh} {
		if err := w.waitMore(began, 10, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	downs := func() (int, int) {
		return int(l.metric("amqplb_server_transitions_total", `server="`+victim.Name+`"`, `to="down"`)), h.downs(victim.Name)
	}
	ld0, hd0 := downs()
	how := "`tc qdisc add dev VETH root netem delay 200ms loss 5%` on the host's end of the node's link, 30 s"
	undo := func() error { return run("tc", "qdisc", "del", "dev", ns.hostIf, "root") }
	t.Cleanup(func() { _ = undo() })
	if netem {
		if err := run("tc", "qdisc", "add", "dev", ns.hostIf, "root", "netem", "delay", "200ms", "loss", "5%"); err != nil {
			t.Fatal(err)
		}
	} else {
		// A kernel without sch_netem (this VM's): 5 % of the packets into the namespace dropped
		// by iptables on its veth, and 200 ms added by the relay to every chunk from the node.
		t.Logf("no netem here: iptables statistic loss and a delaying relay instead")
		how = "no `netem` in this kernel (CONFIG_NET_SCH_NETEM unset), so: `ip netns exec NS iptables -I INPUT -i VETH -m statistic --mode random --probability 0.05 -j DROP` in the namespace of a real node + 200 ms added by a relay in front of it to each chunk from the node, 30 s"
		loss := []string{"iptables", "-w", "-I", "INPUT", "-i", ns.nsIf, "-m", "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP"}
		undo = func() error {
			rl.delay.Store(0)
			del := slices.Clone(loss)
			del[2] = "-D"
			return ns.exec(del...)
		}
		if err := ns.exec(loss...); err != nil {
			t.Fatal(err)
		}
		rl.delay.Store(int64(200 * time.Millisecond))
	}
	faultAt := time.Now()
	// The fault lasts a fixed time: its length is the row's shape, not a wait on a state.
	// Meanwhile the servers' states are sampled, to catch a flap.
	var lNotUp, hNotUp int
	for time.Since(faultAt) < hold {
		if s := l.server(victim.Name); s.State != "up" {
			lNotUp++
		}
		if st := h.status(victim.Name); !strings.HasPrefix(st, "UP") {
			hNotUp++
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	ld1, hd1 := downs()
	wl.halt()
	wh.halt()
	for i, side := range []struct {
		name       string
		w          *watch
		downs, not int
	}{{"amqplb", wl, ld1 - ld0, lNotUp}, {"haproxy", wh, hd1 - hd0, hNotUp}} {
		during := tallyOf(between(side.w.since(began), faultAt, faultAt.Add(hold)))
		met := "yes"
		if side.downs > 0 || during.failedConnects > 0 {
			met = fmt.Sprintf("no: %d down transitions, %d failed connects", side.downs, during.failedConnects)
			if i == 0 {
				goalMissed(t, "slow/lossy link: amqplb %s", met)
			}
		}
		failed := fmt.Sprintf("%d of %d (%d connects) during the fault; p99 %s", during.failed, during.total, during.failedConnects, ms(p99(between(side.w.since(began), faultAt, faultAt.Add(hold)))))
		if during.first != "" {
			failed += "; first: " + firstLine(during.first)
		}
		results.add(row{test: t.Name(), fault: "slow / lossy link", target: side.name,
			clients: fmt.Sprintf("2 connect+publish-with-confirm loops, %d attempts during the 30 s fault", during.total),
			failed:  failed,
			eject:   fmt.Sprintf("%d down transitions; not up in %d of %d samples", side.downs, side.not, int(hold/(250*time.Millisecond))),
			back:    "—",
			goal:    "no ejection flapping (checks: timeout 2.5 s, fall 3); clients still served", met: met,
			how: how})
	}
}
