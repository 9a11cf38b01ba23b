//go:build linux

package faults

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// p99 returns the 99th percentile of the successful attempts' durations.
func p99(as []attempt) time.Duration {
	var d []time.Duration
	for _, a := range as {
		if a.err == nil {
			d = append(d, a.took)
		}
	}
	if len(d) == 0 {
		return -1
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[(len(d)*99)/100]
}

// TestFlood: 5,000 TCP connects in 5 s, held open, at a frontend with max_connections = 500,
// while a watch loop uses another frontend of the same amqplb. The flood is refused at amqplb
// and counted, the refusal warnings are rate-limited, and the loop sees no failure and a p99
// within 2× its baseline.
func TestFlood(t *testing.T) {
	c := requireFaults(t)
	const flood, within, limit = 5000, 5 * time.Second, 500
	floodAddr := testenv.FreeAddr(t)
	l := startLB(t, c, lbConfig{extra: fmt.Sprintf("[[frontend]]\nname = \"flood\"\nbind = %q\nbackend = \"rabbitmq\"\nmax_connections = %d\n", floodAddr, limit)})
	waitAllServing(t, l, c)
	w := startWatch(l.url(), 2)
	t.Cleanup(w.halt)
	began := time.Now()
	// The baseline: 200 attempts, so that its p99 is not one outlier.
	if err := w.waitMore(began, 200, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	floodAt := time.Now()
	baseline := p99(w.since(began))
	warnBefore := l.logCount(`reason=maxconn`)

	// 10 dialers, each one connect every 10 ms, keeping what they opened until the end.
	var mu sync.Mutex
	var conns []net.Conn
	var dialErrs atomic.Int64
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			tick := time.NewTicker(within * 10 / flood)
			defer tick.Stop()
			for range flood / 10 {
				<-tick.C
				conn, err := net.DialTimeout("tcp", floodAddr, time.Second)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	floodTook := time.Since(floodAt)
	during := w.since(floodAt)
	w.halt()
	refused := l.metric("amqplb_frontend_refused_total", `frontend="flood"`, `reason="maxconn"`)
	active := l.metric("amqplb_frontend_active_connections", `frontend="flood"`)
	warnings := l.logCount(`reason=maxconn`) - warnBefore
	all, dur := tallyOf(w.since(began)), tallyOf(during)
	p := p99(during)
	var miss []string
	if refused < flood-limit-float64(dialErrs.Load()) {
		miss = append(miss, fmt.Sprintf("only %.0f refused", refused))
	}
	if active > limit {
		miss = append(miss, fmt.Sprintf("%.0f active at the flood frontend", active))
	}
	if maxWarn := int(floodTook/time.Second) + 2; warnings > maxWarn {
		miss = append(miss, fmt.Sprintf("%d refusal warnings in %s", warnings, ms(floodTook)))
	}
	if all.failed > 0 {
		miss = append(miss, fmt.Sprintf("%d failed attempts", all.failed))
	}
	// Both p99s are tens of milliseconds on 2 shared cores, where one scheduling hiccup doubles
	// them: 2× plus 25 ms passes, and the row says when only the allowance made it pass.
	const noise = 25 * time.Millisecond
	var note string
	if p > 2*baseline+noise {
		miss = append(miss, fmt.Sprintf("p99 %s > 2 × %s", ms(p), ms(baseline)))
	} else if p > 2*baseline {
		note = fmt.Sprintf(" (p99 %s > 2 × %s, within the 25 ms allowed for scheduling noise)", ms(p), ms(baseline))
	}
	met := "yes" + note
	if len(miss) > 0 {
		met = "no: " + strings.Join(miss, "; ")
		goalMissed(t, "flood: %s", met)
	}
	results.add(row{test: t.Name(), fault: "flood past max_connections", target: "amqplb",
		clients: fmt.Sprintf("%d TCP connects in %s held open (%d failed to dial) at a frontend with max_connections = %d; 2 watch loops on another frontend, %d attempts during the flood",
			flood, ms(floodTook), dialErrs.Load(), limit, dur.total),
		failed: fmt.Sprintf("watch loops: %d of %d; p99 %s during the flood, baseline %s", all.failed, all.total, ms(p), ms(baseline)),
		eject:  fmt.Sprintf("%.0f refused (maxconn), %.0f held at the limit", refused, active),
		back:   fmt.Sprintf("%d refusal warnings logged", warnings),
		goal:   "refused at amqplb, counted, logs rate-limited; watch loop: 0 failures, p99 ≤ 2× baseline (+ 25 ms)", met: met,
		how: "5,000 `connect()` to the flood frontend in 5 s, none closed"})
}

// sessionsFrom counts amqplb's sessions whose client address holds addr (-1 if unknown).
func (l *lb) sessionsFrom(addr string) int {
	resp, err := http.Get("http://" + l.admin + "/api/v1/sessions?limit=1&q=" + addr)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return -1
	}
	return body.Total
}

// baseline reads amqplb's goroutines and fds while idle: the highest of 5 readings 200 ms
// apart, since the checks' own connections come and go.
func (l *lb) baseline() (goroutines, fds int) {
	for range 5 {
		g, f := l.goroutinesAndFDs()
		goroutines, fds = max(goroutines, g), max(fds, f)
		time.Sleep(200 * time.Millisecond)
	}
	return goroutines, fds
}

// backToBaseline waits up to 30 s for amqplb's goroutines and fds to come down to g0 and f0,
// and returns the last reading, with a description of the leak if they did not.
func (l *lb) backToBaseline(g0, f0 int) (g, f int, leak string) {
	if testenv.Poll(30*time.Second, func() error {
		if g, f = l.goroutinesAndFDs(); g > g0 || f > f0 {
			return errors.New("above the baseline")
		}
		return nil
	}) != nil {
		leak = fmt.Sprintf("goroutines %d (baseline %d), fds %d (baseline %d)", g, g0, f, f0)
	}
	return g, f, leak
}

// goroutinesAndFDs reads amqplb's own figures from its /metrics.
func (l *lb) goroutinesAndFDs() (int, int) {
	return int(l.metric("go_goroutines")), int(l.metric("process_open_fds"))
}

// TestSlowlorisGarbageHalfOpen: 50 clients each that send a protocol header at one byte a
// second (never complete), 64 random bytes, or the header and then vanish without a FIN (their
// packets dropped by an iptables rule on their own loopback address). Each is closed within the
// handshake timeout (10 s), and amqplb's goroutines and fds come back to their baseline.
func TestSlowlorisGarbageHalfOpen(t *testing.T) {
	c := requireFaults(t)
	const n = 50
	const handshakeTimeout = 10 * time.Second
	l := startLB(t, c, lbConfig{})
	waitAllServing(t, l, c)
	g0, f0 := l.baseline()
	type kind struct {
		name string
		run  func(net.Conn)
		src  string // local address to dial from; "" = any
	}
	slow := func(conn net.Conn) {
		for _, b := range []byte("AMQP\x00\x00\x09") {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	}
	garbage := func(conn net.Conn) {
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		_, _ = conn.Write(b)
	}
	kinds := []kind{{"slowloris", slow, ""}, {"garbage", garbage, ""}}
	// Half-open needs iptables (root): the clients dial from 127.0.0.77, which nothing else uses,
	// and the rule drops every packet to that address once they have sent their header.
	halfOpen := "127.0.0.77"
	if dropRule(t, halfOpen) {
		kinds = append(kinds, kind{"half-open", func(net.Conn) {}, halfOpen})
	}
	type outcome struct {
		closedAfter []time.Duration
		unclosed    int
	}
	out := make([]outcome, len(kinds))
	var mu sync.Mutex
	var wg sync.WaitGroup
	if halfOpen != "" && len(kinds) == 3 {
		// First the half-open clients: connect, send the header, then every packet to them is
		// dropped. amqplb's session must end on its own (the handshake timeout): the sessions API
		// lists them by client address until then.
		var conns []net.Conn
		for range n {
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(halfOpen)}}
			conn, err := d.Dial("tcp", l.addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
			_, _ = conn.Write([]byte("AMQP\x00\x00\x09\x01"))
		}
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		if err := iptables("-I", "INPUT", "-d", halfOpen, "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		wg.Go(func() {
			k := len(kinds) - 1
			err := testenv.Poll(60*time.Second, func() error {
				if n := l.sessionsFrom(halfOpen); n > 0 {
					return fmt.Errorf("%d sessions from %s", n, halfOpen)
				}
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out[k].unclosed = l.sessionsFrom(halfOpen)
				return
			}
			for range conns {
				out[k].closedAfter = append(out[k].closedAfter, time.Since(t0))
			}
		})
	}
	for k, kd := range kinds {
		if kd.src != "" {
			continue
		}
		for range n {
			wg.Go(func() {
				conn, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
				if err != nil {
					mu.Lock()
					out[k].unclosed++
					mu.Unlock()
					return
				}
				t0 := time.Now()
				defer conn.Close()
				go kd.run(conn)
				_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout + 5*time.Second))
				_, err = io.Copy(io.Discard, conn)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					out[k].unclosed++
					return
				}
				out[k].closedAfter = append(out[k].closedAfter, time.Since(t0))
			})
		}
	}
	wg.Wait()
	var miss []string
	g1, f1, leak := l.backToBaseline(g0, f0)
	if leak != "" {
		miss = append(miss, leak)
	}
	var parts []string
	for k, kd := range kinds {
		var worst time.Duration
		for _, d := range out[k].closedAfter {
			worst = max(worst, d)
		}
		parts = append(parts, fmt.Sprintf("%s: %d closed, slowest after %s, %d not closed", kd.name, len(out[k].closedAfter), ms(worst), out[k].unclosed))
		if out[k].unclosed > 0 {
			miss = append(miss, fmt.Sprintf("%d %s clients not closed", out[k].unclosed, kd.name))
		}
		if worst > handshakeTimeout+time.Second {
			miss = append(miss, fmt.Sprintf("%s closed after %s", kd.name, ms(worst)))
		}
	}
	if len(kinds) < 3 {
		parts = append(parts, "half-open: not run (iptables unusable)")
	}
	met := "yes"
	if len(miss) > 0 {
		met = "no: " + strings.Join(miss, "; ")
		goalMissed(t, "slowloris/garbage/half-open: %s", met)
	}
	results.add(row{test: t.Name(), fault: "slowloris / garbage / half-open", target: "amqplb",
		clients: fmt.Sprintf("%d of each: a header at 1 byte/s never completed; 64 random bytes; header then gone without FIN", n),
		failed:  strings.Join(parts, "; "),
		eject:   "—", back: fmt.Sprintf("goroutines %d → %d, fds %d → %d", g0, g1, f0, f1),
		goal: "refused within the handshake timeout (10 s); no fd or goroutine leak", met: met,
		how: "raw TCP clients; half-open: `iptables -I INPUT -d 127.0.0.77 -j DROP` (removed after)"})
}

// iptables runs iptables with args.
func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// dropRule tells whether iptables can add and remove a rule here, and registers the removal of
// the test's DROP rule for addr (whether or not it gets added) when t ends.
func dropRule(t *testing.T, addr string) bool {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Logf("no iptables: %v", err)
		return false
	}
	if err := iptables("-C", "INPUT", "-d", addr, "-j", "DROP"); err == nil {
		t.Fatalf("a DROP rule for %s is already there", addr)
	}
	if err := iptables("-L", "INPUT", "-n"); err != nil {
		t.Log(err)
		return false
	}
	t.Cleanup(func() {
		for iptables("-D", "INPUT", "-d", addr, "-j", "DROP") == nil {
		}
	})
	return true
}
