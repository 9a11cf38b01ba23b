package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// apiServer is a server as GET /api/v1/backends shows it.
type apiServer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	State   string `json:"state"`
	Check   struct {
		Status     string  `json:"status"`
		Code       int     `json:"code"`
		Reason     string  `json:"reason"`
		DurationMS float64 `json:"duration_ms"`
		At         string  `json:"at"`
	} `json:"check"`
	ActiveConnections int64  `json:"active_connections"`
	TotalConnections  uint64 `json:"total_connections"`
	Weight            int    `json:"weight"`
	Backup            bool   `json:"backup"`
	Suspect           bool   `json:"suspect"`
}

// servers reads the backend "rabbitmq" from the admin API.
func (l *lb) servers(t testing.TB) map[string]apiServer {
	t.Helper()
	return l.backendServers(t)["rabbitmq"]
}

// backendServers reads every backend from the admin API: backend → server name → server.
func (l *lb) backendServers(t testing.TB) map[string]map[string]apiServer {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Backends []struct {
			Name    string      `json:"name"`
			Servers []apiServer `json:"servers"`
		} `json:"backends"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /api/v1/backends: %v", err)
	}
	out := map[string]map[string]apiServer{}
	for _, b := range body.Backends {
		out[b.Name] = map[string]apiServer{}
		for _, s := range b.Servers {
			out[b.Name][s.Name] = s
		}
	}
	return out
}

// waitState polls the admin API until server has state, and returns how long that took.
func (l *lb) waitState(t testing.TB, server, state string, within time.Duration) (time.Duration, apiServer) {
	t.Helper()
	t0 := time.Now()
	var s apiServer
	testenv.Eventually(t, within, func() error {
		s = l.servers(t)[server]
		// "up" before the first check only means "not checked yet": wait for a passing check.
		if s.State != state || (state == "up" && s.Check.Status != "ok") {
			return fmt.Errorf("server %s is %q (check: %+v), want %q", server, s.State, s.Check, state)
		}
		return nil
	})
	return time.Since(t0), s
}

// waitEligible polls the admin API until server is up and not suspect: a server that failed a
// client's dial is skipped until down_interval has passed or a check has passed, so a node that is
// back is not yet one that new clients reach.
func (l *lb) waitEligible(t testing.TB, server string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		if s := l.servers(t)[server]; s.State != "up" || s.Suspect {
			return fmt.Errorf("server %s is %q, suspect %v", server, s.State, s.Suspect)
		}
		return nil
	})
}

func connectPublish(url string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "amq.rabbitmq.reply-to-nowhere", false, false, amqp.Publishing{Body: []byte("x")})
	if err != nil {
		return err
	}
	if _, err := dc.WaitContext(ctx); err != nil {
		return err
	}
	return ch.Close()
}

const fastChecks = `type = "amqp"
interval = "1s"
fast_interval = "500ms"
down_interval = "1s"
timeout = "500ms"
rise = 2
fall = 2`

func TestSIGSTOPEjectsAHungBroker(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c), check: fastChecks, backend: "retries = 3\nredispatch = true"})
	victim := c.Nodes[1]
	for _, n := range c.Nodes {
		l.waitState(t, n.Name, "up", 10*time.Second)
	}
	// After its first check a server's next one is jittered over the interval; pause after
	// the second, when checks run every interval.
	_, first := l.waitState(t, victim.Name, "up", 10*time.Second)
	testenv.Eventually(t, 5*time.Second, func() error {
		if l.servers(t)[victim.Name].Check.At == first.Check.At {
			return errors.New("no second check")
		}
		return nil
	})
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	took, s := l.waitState(t, victim.Name, "down", 10*time.Second)
	if took > 3500*time.Millisecond {
		t.Errorf("a frozen broker was ejected after %v, want within 3.5s", took)
	}
	if !strings.Contains(s.Check.Reason, "timeout") {
		t.Errorf("down reason %q does not say timeout", s.Check.Reason)
	}
	for i := range 200 {
		conn, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			t.Fatalf("connect %d with %s frozen: %v", i, victim.Name, err)
		}
		conn.Close()
	}
	if err := victim.Resume(); err != nil {
		t.Fatal(err)
	}
	// rise = 2 passes at fast_interval (500ms) after the next down_interval (1s) check.
	took, _ = l.waitState(t, victim.Name, "up", 10*time.Second)
	if took > 4*time.Second {
		t.Errorf("the resumed broker came back after %v, want within a few intervals", took)
	}
	before := l.servers(t)[victim.Name].TotalConnections
	for range 9 {
		l.dial(t)
	}
	if after := l.servers(t)[victim.Name].TotalConnections; after-before < 2 {
		t.Errorf("the recovered broker got %d of 9 new connections", after-before)
	}
}

func TestSIGKILLUnderConnectPublishLoop(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{servers: nodesAsServers(c), check: strings.Replace(fastChecks, "fall = 2", "fall = 3", 1),
		backend: "retries = 3\nredispatch = true"})
	victim := c.Nodes[2]
	for _, n := range c.Nodes {
		l.waitState(t, n.Name, "up", 10*time.Second)
	}
	var killedAt atomic.Int64 // unix nanos once the kill has returned
	var ok, failed, runs atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			started := time.Now().UnixNano()
			err := connectPublish(l.url())
			// A connect already under way on the node when it died may fail with it; every
			// connect that starts after the kill must succeed.
			if k := killedAt.Load(); k != 0 && started > k {
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
			runs.Add(1)
		}
	})
	// The loop is under way (round robin has sent some of it to the victim) before the kill.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := runs.Load(); n < 10 {
			return fmt.Errorf("the loop made %d connects, want 10 before the kill", n)
		}
		return nil
	})
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt.Store(time.Now().UnixNano())
	_, down := l.waitState(t, victim.Name, "down", 10*time.Second)
	took := time.Since(killed)
	// The loop goes on while the node is down: until the victim has been checked twice more (the
	// second at down_interval) and 10 more connects have been made.
	atDown, checks, lastAt := runs.Load(), 0, down.Check.At
	testenv.Eventually(t, 30*time.Second, func() error {
		if at := l.servers(t)[victim.Name].Check.At; at != lastAt {
			checks, lastAt = checks+1, at
		}
		if n := runs.Load() - atDown; checks < 2 || n < 10 {
			return fmt.Errorf("%d checks of %s and %d connects since it was marked down, want 2 and 10", checks, victim.Name, n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d connects after the kill failed (first: %v); %d succeeded", n, firstErr.Load(), ok.Load())
	}
	if ok.Load() < 20 {
		t.Errorf("only %d connects after the kill: the loop proves little", ok.Load())
	}
	// Kill returns once every thread of the node is gone, which takes a while; the node is
	// down within one fast interval (500ms) of its first failed connect.
	if took > 3*time.Second {
		t.Errorf("the killed broker was marked down %v after the kill", took)
	}
}

func TestCheckReportsTheBrokersReplyCode(t *testing.T) {
	c := testenv.RequireCluster(t)
	for _, tc := range []struct {
		name, check string
		code        int
		words       string
	}{
		{"wrong password", `password = "wrong"`, 403, "ACCESS_REFUSED"},
		{"missing vhost", `vhost = "nope"`, 530, "NOT_ALLOWED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startLB(t, setup{servers: nodesAsServers(c)[:1], check: fastChecks + "\n" + tc.check})
			_, s := l.waitState(t, c.Nodes[0].Name, "down", 10*time.Second)
			if s.Check.Code != tc.code || !strings.Contains(s.Check.Reason, tc.words) {
				t.Errorf("check = %+v, want code %d and %q in the reason", s.Check, tc.code, tc.words)
			}
			waitLog(t, l, 1, fmt.Sprint(tc.code))
		})
	}
}

func TestOnMarkedDown(t *testing.T) {
	c := testenv.RequireCluster(t)
	for _, tc := range []struct {
		mode      string
		wantClose bool
	}{{"shutdown-sessions", true}, {"keep", false}} {
		t.Run(tc.mode, func(t *testing.T) {
			victim := c.Nodes[0]
			// "first" sends every connection to the first server: the one we freeze.
			l := startLB(t, setup{balance: "first", servers: nodesAsServers(c), check: fastChecks,
				backend: fmt.Sprintf("on_marked_down = %q", tc.mode)})
			l.waitState(t, victim.Name, "up", 10*time.Second)
			conn := l.dial(t)
			closed := conn.NotifyClose(make(chan *amqp.Error, 1))
			if err := victim.Pause(); err != nil {
				t.Fatal(err)
			}
			l.waitState(t, victim.Name, "down", 10*time.Second)
			if tc.wantClose {
				select {
				case <-closed:
				case <-time.After(2 * time.Second):
					t.Error("the session on the down server is still open")
				}
			}
			if err := victim.Resume(); err != nil {
				t.Fatal(err)
			}
			if !tc.wantClose {
				// Kept: once the broker answers again, the session works (a closed one would not).
				ch, err := conn.Channel()
				if err != nil {
					t.Errorf("the session was closed although on_marked_down = keep: %v", err)
				} else {
					ch.Close()
				}
			}
		})
	}
}

func TestManagementAlarmIsShownButDoesNotEject(t *testing.T) {
	c := testenv.RequireCluster(t)
	node := c.Nodes[0]
	check := fastChecks + fmt.Sprintf("\nmanagement = { port = %d, alarms = true }", node.ManagementPort)
	l := startLB(t, setup{servers: nodesAsServers(c)[:1], check: check})
	_, s := l.waitState(t, node.Name, "up", 10*time.Second)
	if strings.Contains(s.Check.Reason, "alarm") || strings.Contains(s.Check.Reason, "management API") {
		t.Fatalf("reason before any alarm: %q", s.Check.Reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A memory watermark below what the node uses raises the memory alarm at once.
	if _, err := node.Rabbitmqctl(ctx, "set_vm_memory_high_watermark", "0.0001"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := node.Rabbitmqctl(ctx, "set_vm_memory_high_watermark", "0.4"); err != nil {
			t.Errorf("restoring the watermark: %v", err)
		}
	}()
	testenv.Eventually(t, 20*time.Second, func() error {
		if s = l.servers(t)[node.Name]; !strings.Contains(s.Check.Reason, "alarm: memory") {
			return fmt.Errorf("the memory alarm never showed in the check reason: %+v", s.Check)
		}
		return nil
	})
	// Let the checks act on it: fall (2) more checks that see the alarm would have taken the
	// node down if an alarm failed a check. It must stay up.
	checks, lastAt := 0, s.Check.At
	testenv.Eventually(t, 20*time.Second, func() error {
		s = l.servers(t)[node.Name]
		if s.Check.At != lastAt {
			checks, lastAt = checks+1, s.Check.At
		}
		if checks < 2 && s.State == "up" {
			return fmt.Errorf("%d checks since the alarm showed, want 2", checks)
		}
		return nil
	})
	if s = l.servers(t)[node.Name]; s.State != "up" || !strings.Contains(s.Check.Reason, "alarm: memory") {
		t.Errorf("with an alarm and eject_on_alarm off: state %s, check %+v; want up, alarm shown", s.State, s.Check)
	}
}
