//go:build linux

package faults

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// held is a set of open AMQP connections, each watched for its close.
type held struct {
	conns  []*amqp.Connection
	closed []chan *amqp.Error
}

// hold opens n connections through url, 20 at a time; they are closed when t ends.
func hold(t *testing.T, url string, n int) *held {
	t.Helper()
	h := &held{conns: make([]*amqp.Connection, n), closed: make([]chan *amqp.Error, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(opTimeout)})
			if err != nil {
				errs[i] = err
				return
			}
			h.conns[i], h.closed[i] = c, c.NotifyClose(make(chan *amqp.Error, 1))
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range h.conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("opening %d connections: %v", n, err)
	}
	return h
}

// dropped counts the connections closed so far, with the first reason.
func (h *held) dropped() (int, string) {
	n, first := 0, ""
	for i, c := range h.conns {
		if c.IsClosed() {
			n++
			if first == "" {
				select {
				case e := <-h.closed[i]:
					if e != nil {
						first = e.Error()
					}
				default:
				}
			}
		}
	}
	return n, first
}

// logCount counts the lines of amqplb's output holding s.
func (l *lb) logCount(s string) int { return strings.Count(l.log.String(), s) }

// TestReloadUnderLoad: 1,000 open connections and a watch loop while amqplb reloads 10 times:
// good files, a bad one, a server removed and added back. Nothing may be dropped or fail.
func TestReloadUnderLoad(t *testing.T) {
	c := requireFaults(t)
	const open, reloads = 1000, 10
	cfg := lbConfig{}
	l := startLB(t, c, cfg)
	waitAllServing(t, l, c)
	h := hold(t, l.url(), open)
	w := startWatch(l.url(), 2)
	t.Cleanup(w.halt)
	began := time.Now()
	if err := w.waitMore(began, 10, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	full := cfg.render(c, l.addr, l.admin)
	less := lbConfig{servers: 2}.render(c, l.addr, l.admin)
	variants := []struct{ what, text string }{
		{"good (check interval changed)", strings.Replace(full, `interval = "1s"`, `interval = "1.5s"`, 1)},
		{"bad (TOML syntax error)", full + "\n[[backend\n"},
		{"server removed", less},
		{"server added back", full},
		{"bad (unknown key)", full + "\n[global]\nno_such_key = 1\n"},
	}
	reloadedAt := time.Now()
	var slowest time.Duration
	for i := range reloads {
		v := variants[i%len(variants)]
		good, bad := l.logCount(`msg=reloaded`), l.logCount(`msg="reload refused`)
		l.write(t, v.text)
		t0 := time.Now()
		if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := testenv.Poll(10*time.Second, func() error {
			if l.logCount(`msg=reloaded`) > good || l.logCount(`msg="reload refused`) > bad {
				return nil
			}
			return errors.New("no reloaded or reload refused line logged within 10s")
		}); err != nil {
			t.Fatalf("reload %d (%s): %v", i+1, v.what, err)
		}
		slowest = max(slowest, time.Since(t0))
		// Some connects between two reloads, so that every configuration serves some.
		if err := w.waitMore(time.Now(), 4, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	w.halt()
	n, first := h.dropped()
	all := tallyOf(w.since(began))
	during := tallyOf(w.since(reloadedAt))
	met := "yes"
	if n > 0 || all.failed > 0 {
		met = fmt.Sprintf("no: %d dropped, %d failed", n, all.failed)
		t.Errorf("reloads under load: %d of %d open connections dropped (first: %s); %d of %d loop attempts failed (first: %s)",
			n, open, first, all.failed, all.total, all.first)
	}
	results.add(row{test: t.Name(), fault: "reload under load", target: "amqplb",
		clients: fmt.Sprintf("%d connections held open; 2 watch loops, %d attempts during the reloads", open, during.total),
		failed:  fmt.Sprintf("%d of %d held connections dropped; %d of %d attempts failed", n, open, all.failed, all.total),
		eject:   "—", back: fmt.Sprintf("reloads acknowledged within %s", ms(slowest)),
		goal: "0 dropped, 0 failed", met: met,
		how: fmt.Sprintf("%d × (rewrite amqplb.toml; `kill -HUP`): good, bad syntax, server removed, added back, unknown key", reloads)})
}

// TestSIGTERMUnderLoad: 500 open connections, then SIGTERM. New connects must be refused at
// once, and amqplb must exit 0 within drain_timeout (5 s), closing what is left.
func TestSIGTERMUnderLoad(t *testing.T) {
	c := requireFaults(t)
	const open = 500
	const drain = 5 * time.Second
	l := startLB(t, c, lbConfig{})
	waitAllServing(t, l, c)
	h := hold(t, l.url(), open)
	t0 := time.Now()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The first connect that is refused (TCP RST: the listener is closed).
	refusedAfter := time.Duration(-1)
	for time.Since(t0) < drain {
		conn, err := net.DialTimeout("tcp", l.addr, time.Second)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				refusedAfter = time.Since(t0)
				break
			}
		} else {
			conn.Close()
		}
		time.Sleep(time.Millisecond)
	}
	var exitErr error
	exitAfter := time.Duration(-1)
	select {
	case exitErr = <-l.done:
		l.done <- exitErr
		exitAfter = time.Since(t0)
	case <-time.After(drain + 5*time.Second):
	}
	var n int
	_ = testenv.Poll(5*time.Second, func() error {
		if n, _ = h.dropped(); n != open {
			return fmt.Errorf("%d of %d held connections closed", n, open)
		}
		return nil
	})
	var miss []string
	if refusedAfter < 0 || refusedAfter > 100*time.Millisecond {
		miss = append(miss, "new connects refused after "+ms(refusedAfter))
	}
	if exitAfter < 0 || exitErr != nil || exitAfter > drain+time.Second {
		miss = append(miss, fmt.Sprintf("exit %v after %s", exitErr, ms(exitAfter)))
	}
	met := "yes"
	if len(miss) > 0 {
		met = "no: " + strings.Join(miss, "; ")
		goalMissed(t, "SIGTERM under load: %s", met)
	}
	results.add(row{test: t.Name(), fault: "SIGTERM under load", target: "amqplb",
		clients: fmt.Sprintf("%d connections held open, a TCP connect every ms", open),
		failed:  fmt.Sprintf("%d of %d held connections closed at the end of drain_timeout (by design)", n, open),
		eject:   "new connects refused after " + ms(refusedAfter), back: fmt.Sprintf("exit %v after %s", exitStatus(exitErr), ms(exitAfter)),
		goal: "new connects refused at once; exit 0 within drain_timeout (5 s)", met: met,
		how: "`kill -TERM` to amqplb"})
}

func exitStatus(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}
