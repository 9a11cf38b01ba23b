//go:build linux

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// ejectRow is a fault on one node that the balancers should notice (or, for an alarm, show
// without acting on it), and its undo.
type ejectRow struct {
	fault, how, goal string
	victim           int    // index of the node in the cluster
	state            string // amqplb's state for the node during the fault; "" = must stay up
	shown            string // with state "": the text the check reason must show meanwhile
	maxEject         time.Duration
	check            string // extra [backend.health_check] lines
	mgmt             string // extra keys of the management inline table
	haproxy          bool   // run HAProxy beside amqplb
	fromReturn       bool   // time the ejection from the fault command's return, not its start
	hold             int    // attempts per loop to wait for after the ejection and after the return; 0 = 20
	inject, undo     func(context.Context, *testenv.Node) error
	note             func() string // what the fault's run had to say (a retried command), appended to how
	net              lbConfig      // addrs and noMgmt of a node behind a namespace
	vhost            string        // made for the row (every node), the clients' and amqplb's checks' vhost; "" = "/"
	reason           string        // with a state: the text amqplb's check reason must show once ejected
}

// waitAllServing waits until amqplb sends new clients to every node.
func waitAllServing(t *testing.T, l *lb, c *testenv.Cluster) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range c.Nodes {
			if !l.serving(n.Name) {
				return fmt.Errorf("amqplb: %s is %+v", n.Name, l.server(n.Name))
			}
		}
		return nil
	})
}

// sideResult is what one balancer did in a row.
type sideResult struct {
	name         string
	eject, back  time.Duration // -1 when not seen
	all, after   tally         // every attempt; those started after the ejection
	stateDuring  string
	reasonSeen   string // amqplb's check reason of the node once ejected
	ejectedFalse bool   // with state "": the node left rotation although it should not have
	leak         string // amqplb's goroutines or fds above their baseline after the row
	baseline     string // amqplb's goroutines and fds before and after
}

// run runs the row: both balancers in front of the cluster, a watch loop through each, the
// fault, a hold until every loop has made 20 attempts after the ejection, the undo, a hold until
// 20 more after the node is back, then the tallies.
func (r ejectRow) run(t *testing.T, c *testenv.Cluster) {
	victim := c.Nodes[r.victim]
	cfg := r.net
	cfg.check, cfg.mgmt = r.check, r.mgmt
	if r.vhost != "" {
		addVHost(t, c, r.vhost)
		cfg.check += fmt.Sprintf("\nvhost = %q", r.vhost)
	}
	l := startLB(t, c, cfg)
	var h *haproxy
	if r.haproxy {
		h = startHAProxy(t, c, cfg)
	}
	waitAllServing(t, l, c)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range c.Nodes {
			if h != nil && h.status(n.Name) != "UP" {
				return fmt.Errorf("haproxy: %s is %q", n.Name, h.status(n.Name))
			}
		}
		return nil
	})
	// After its first check a server's next one is jittered over the interval: start once the
	// victim's checks run at the steady interval.
	first := l.server(victim.Name).Check.At
	testenv.Eventually(t, 10*time.Second, func() error {
		if l.server(victim.Name).Check.At == first {
			return fmt.Errorf("no second check of %s", victim.Name)
		}
		return nil
	})

	g0, f0 := l.baseline()
	sides := []*sideResult{{name: "amqplb", eject: -1, back: -1}}
	vpath := url.PathEscape(r.vhost)
	watches := []*watch{startWatch(l.url()+vpath, 2)}
	if h != nil {
		sides = append(sides, &sideResult{name: "haproxy", eject: -1, back: -1})
		watches = append(watches, startWatch(h.url()+vpath, 2))
	}
	t.Cleanup(func() {
		for _, w := range watches {
			w.halt()
		}
	})
	began := time.Now()
	for _, w := range watches {
		if err := w.waitMore(began, 10, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// ejected tells whether side i has the node out of rotation (amqplb: in r.state).
	ejected := func(i int) bool {
		if i == 0 {
			return l.server(victim.Name).State == r.state
		}
		st := h.status(victim.Name)
		return strings.HasPrefix(st, "DOWN") || strings.HasPrefix(st, "MAINT") || strings.HasPrefix(st, "NOLB")
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := r.undo(ctx, victim); err != nil {
			t.Errorf("undoing %s on %s: %v", r.fault, victim.Name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	faultAt := time.Now()
	if err := r.inject(ctx, victim); err != nil {
		t.Fatalf("%s on %s: %v", r.fault, victim.Name, err)
	}
	t.Logf("%s on %s: the command took %v", r.fault, victim.Name, time.Since(faultAt).Round(time.Millisecond))
	if r.fromReturn {
		faultAt = time.Now()
	}
	hold := r.hold
	if hold == 0 {
		hold = 20
	}

	// Eject (or, for a fault that must not eject, the reason shown), polled every 25 ms.
	_ = testenv.Poll(20*time.Second, func() error {
		pending := false
		for i, s := range sides {
			if s.eject >= 0 {
				continue
			}
			switch {
			case i == 0 && r.state == "":
				if strings.Contains(l.server(victim.Name).Check.Reason, r.shown) {
					s.eject = time.Since(faultAt)
				}
			case ejected(i):
				s.eject = time.Since(faultAt)
				if i == 0 {
					s.reasonSeen = l.server(victim.Name).Check.Reason
				}
			}
			if s.eject < 0 && (i == 0 || r.state != "") {
				pending = true
			}
		}
		if pending {
			return errors.New("not ejected yet")
		}
		return nil
	})
	if r.state == "" {
		// Hold for fall checks after the reason showed: a check that acted on it would have taken
		// the node out by then.
		checks, last := 0, l.server(victim.Name).Check.At
		testenv.Eventually(t, 20*time.Second, func() error {
			s := l.server(victim.Name)
			if s.State != "up" {
				sides[0].ejectedFalse = true
				sides[0].stateDuring = s.State
			}
			if s.Check.At != last {
				checks, last = checks+1, s.Check.At
			}
			if checks < checkFall+1 {
				return fmt.Errorf("%d checks since the reason showed", checks)
			}
			return nil
		})
	}
	ejectAt := map[int]time.Time{}
	for i, s := range sides {
		at := time.Now()
		if s.eject >= 0 {
			at = faultAt.Add(s.eject)
		}
		ejectAt[i] = at
		if err := watches[i].waitMore(at, hold, 90*time.Second); err != nil {
			t.Error(err)
		}
	}

	undoCtx, cancelUndo := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelUndo()
	if err := r.undo(undoCtx, victim); err != nil {
		t.Fatalf("undoing %s on %s: %v", r.fault, victim.Name, err)
	}
	backAt := time.Now()
	_ = testenv.Poll(30*time.Second, func() error {
		pending := false
		for i, s := range sides {
			if s.back >= 0 {
				continue
			}
			var ok bool
			if i == 0 {
				ok = l.serving(victim.Name) && (r.shown == "" || !strings.Contains(l.server(victim.Name).Check.Reason, r.shown))
			} else {
				ok = h.status(victim.Name) == "UP"
			}
			if ok {
				s.back = time.Since(backAt)
			} else {
				pending = true
			}
		}
		if pending {
			return errors.New("not back yet")
		}
		return nil
	})
	for i := range sides {
		if err := watches[i].waitMore(backAt, hold, 60*time.Second); err != nil {
			t.Error(err)
		}
		watches[i].halt()
		sides[i].all = tallyOf(watches[i].since(began))
		sides[i].after = tallyOf(watches[i].since(ejectAt[i]))
	}
	// Every client has gone: amqplb holds what it held before the row.
	g1, f1, leak := l.backToBaseline(g0, f0)
	sides[0].leak = leak
	sides[0].baseline = fmt.Sprintf("goroutines %d → %d, fds %d → %d", g0, g1, f0, f1)
	r.record(t, sides)
}

// record adds the row's lines to the results and fails the test when amqplb missed its goal.
func (r ejectRow) record(t *testing.T, sides []*sideResult) {
	for i, s := range sides {
		var miss []string
		if r.state != "" {
			if s.eject < 0 {
				miss = append(miss, "never ejected")
			} else if r.maxEject > 0 && s.eject > r.maxEject {
				miss = append(miss, fmt.Sprintf("ejected after %s > %s", ms(s.eject), ms(r.maxEject)))
			}
			if s.after.failedConnects > 0 {
				miss = append(miss, fmt.Sprintf("%d failed connects after the ejection", s.after.failedConnects))
			}
			if i == 0 && r.reason != "" && s.eject >= 0 && !strings.Contains(s.reasonSeen, r.reason) {
				miss = append(miss, fmt.Sprintf("check reason %q, want %q in it", s.reasonSeen, r.reason))
			}
		} else if i == 0 {
			if s.eject < 0 {
				miss = append(miss, "not shown")
			}
			if s.ejectedFalse {
				miss = append(miss, "taken out of rotation ("+s.stateDuring+")")
			}
		}
		if s.back < 0 {
			miss = append(miss, "never back")
		}
		if s.leak != "" {
			miss = append(miss, s.leak)
		}
		met := "yes"
		if len(miss) > 0 {
			met = "no: " + strings.Join(miss, "; ")
		}
		failed := fmt.Sprintf("%d of %d (%d connects); after eject %d of %d (%d connects)",
			s.all.failed, s.all.total, s.all.failedConnects, s.after.failed, s.after.total, s.after.failedConnects)
		if s.all.first != "" {
			failed += "; first: " + firstLine(s.all.first)
		}
		clients := fmt.Sprintf("2 connect+publish-with-confirm loops, %d attempts, slowest %s", s.all.total, ms(s.all.maxTook))
		if s.baseline != "" {
			clients += "; amqplb's " + s.baseline
		}
		eject := ms(s.eject)
		if s.reasonSeen != "" {
			eject += " (" + firstLine(s.reasonSeen) + ")"
		}
		if r.state == "" && i == 0 {
			eject = "shown after " + eject
		} else if r.state == "" {
			eject = "—"
		}
		how := r.how
		if r.note != nil && r.note() != "" {
			how += " (" + r.note() + ")"
		}
		results.add(row{test: t.Name(), fault: r.fault, target: s.name, clients: clients, failed: failed,
			eject: eject, back: ms(s.back), goal: r.goal, met: met, how: how})
		t.Logf("%s: eject %s, back %s, %s, met: %s", s.name, eject, ms(s.back), failed, met)
		if i == 0 && met != "yes" {
			goalMissed(t, "amqplb missed the goal of %q: %s", r.fault, met)
		}
	}
}

// addVHost makes vhost on the cluster with every permission for guest, and deletes it when t
// ends.
func addVHost(t *testing.T, c *testenv.Cluster, vhost string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := c.Nodes[0]
	if _, err := n.Rabbitmqctl(ctx, "add_vhost", vhost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := n.Rabbitmqctl(ctx, "delete_vhost", vhost); err != nil {
			t.Errorf("deleting vhost %s: %v", vhost, err)
		}
	})
	if _, err := n.Rabbitmqctl(ctx, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"); err != nil {
		t.Fatal(err)
	}
}

// firstLine shortens an error for a table cell.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}
