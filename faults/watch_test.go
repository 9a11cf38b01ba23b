//go:build linux

package faults

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// attempt is one connect+publish-with-confirm of a watch loop.
type attempt struct {
	start time.Time
	took  time.Duration
	stage string // "" on success, else where it failed: connect, channel, publish, confirm
	err   error
}

// watch is a set of clients, each doing connect, channel, confirm mode, one publish, wait for
// the confirm, close, in a loop: what an application that reconnects for every job sees.
type watch struct {
	url  string
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	attempts []attempt
}

// Bounds of every watch loop: it never runs longer than this, nor makes more attempts.
const (
	watchMaxTime     = 3 * time.Minute
	watchMaxAttempts = 20000
	watchGap         = 20 * time.Millisecond // between two attempts of one client, to keep the load modest
	opTimeout        = 5 * time.Second       // a connect, or a publish's confirm
)

// startWatch starts clients loops against url; stop them with w.halt.
func startWatch(url string, clients int) *watch {
	w := &watch{url: url, stop: make(chan struct{})}
	deadline := time.Now().Add(watchMaxTime)
	for range clients {
		w.wg.Go(func() {
			for i := 0; i < watchMaxAttempts/clients && time.Now().Before(deadline); i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				a := connectPublish(url)
				w.mu.Lock()
				w.attempts = append(w.attempts, a)
				w.mu.Unlock()
				select {
				case <-w.stop:
					return
				case <-time.After(watchGap):
				}
			}
		})
	}
	return w
}

// halt stops the clients and waits for them.
func (w *watch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// since returns the attempts that started at or after t, in start order.
func (w *watch) since(t time.Time) []attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []attempt
	for _, a := range w.attempts {
		if !a.start.Before(t) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// count returns how many attempts started at or after t (finished ones only).
func (w *watch) count(t time.Time) int { return len(w.since(t)) }

// waitMore waits until n more attempts, started after t, have finished, or within has passed.
func (w *watch) waitMore(t time.Time, n int, within time.Duration) error {
	return testenv.PollEvery(within, 50*time.Millisecond, func() error {
		if got := w.count(t); got < n {
			return fmt.Errorf("%d attempts through %s since %s, want %d within %v", got, w.url, t.Format("15:04:05.000"), n, within)
		}
		return nil
	})
}

// tally sums attempts: all of them, and the failed ones by stage, with the first error.
type tally struct {
	total, failed, failedConnects int
	first                         string
	maxTook                       time.Duration
}

func tallyOf(as []attempt) tally {
	var t tally
	for _, a := range as {
		t.total++
		t.maxTook = max(t.maxTook, a.took)
		if a.err == nil {
			continue
		}
		t.failed++
		if a.stage == "connect" {
			t.failedConnects++
		}
		if t.first == "" {
			t.first = a.stage + ": " + a.err.Error()
		}
	}
	return t
}

// between returns the attempts that started in [from, to).
func between(as []attempt, from, to time.Time) []attempt {
	var out []attempt
	for _, a := range as {
		if !a.start.Before(from) && a.start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// connectPublish is one attempt of a watch client. The message goes to the default exchange
// with a key no queue has: the broker confirms it all the same, and nothing piles up.
func connectPublish(url string) (a attempt) {
	a.start = time.Now()
	defer func() { a.took = time.Since(a.start) }()
	fail := func(stage string, err error) attempt {
		a.stage, a.err = stage, err
		return a
	}
	var raw net.Conn
	dial := amqp.DefaultDial(opTimeout)
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		raw = c
		return c, err
	}})
	if err != nil {
		return fail("connect", err)
	}
	// A broker that blocks publishers (an alarm) stops reading, so Connection.Close would wait for
	// its Close-Ok forever: give it opTimeout, then drop the socket.
	defer func() {
		done := make(chan struct{})
		go func() {
			conn.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(opTimeout):
			raw.Close()
			<-done
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return fail("channel", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fail("channel", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "amqplb-faults-nowhere", false, false, amqp.Publishing{Body: []byte("x")})
	if err != nil {
		return fail("publish", err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fail("confirm", err)
	}
	if !ok {
		return fail("confirm", fmt.Errorf("nack"))
	}
	return a
}
