package healthcheck

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/backend"
	"github.com/amqplb/amqplb/internal/testenv"
)

func TestParseAgentReply(t *testing.T) {
	none := AgentReply{Weight: -1, MaxConn: -1}
	with := func(f func(*AgentReply)) AgentReply { r := none; f(&r); return r }
	for _, tc := range []struct {
		line string
		want AgentReply
	}{
		// The forms HAProxy's configuration manual lists under agent-check.
		{"75%", with(func(r *AgentReply) { r.Weight = 75 })},
		{"maxconn:30", with(func(r *AgentReply) { r.MaxConn = 30 })},
		{"ready", with(func(r *AgentReply) { r.Admin = "ready" })},
		{"drain", with(func(r *AgentReply) { r.Admin = "drain" })},
		{"maint", with(func(r *AgentReply) { r.Admin = "maint" })},
		{"down", with(func(r *AgentReply) { r.Health = "down" })},
		{"fail", with(func(r *AgentReply) { r.Health = "fail" })},
		{"stopped", with(func(r *AgentReply) { r.Health = "stopped" })},
		{"up", with(func(r *AgentReply) { r.Health = "up" })},
		{"down#Failed to connect to the database", with(func(r *AgentReply) {
			r.Health, r.Reason = "down", "Failed to connect to the database"
		})},
		// Several words, separated by spaces, tabs or commas, in any case.
		{"up 75% maxconn:30\n", with(func(r *AgentReply) { r.Health, r.Weight, r.MaxConn = "up", 75, 30 })},
		{"ready,up,100%", with(func(r *AgentReply) { r.Admin, r.Health, r.Weight = "ready", "up", 100 })},
		{"DRAIN\t99%\r\n", with(func(r *AgentReply) { r.Admin, r.Weight = "drain", 99 })},
		{"stopped # node is shutting down ", with(func(r *AgentReply) { r.Health, r.Reason = "stopped", "node is shutting down" })},
		// The last word of a sort wins; unknown words and a bare number are ignored.
		{"drain ready 10% 20%", with(func(r *AgentReply) { r.Admin, r.Weight = "ready", 20 })},
		{"ready 100", with(func(r *AgentReply) { r.Admin = "ready" })},
		{"hello world", none},
		{"", none},
		{"0%", with(func(r *AgentReply) { r.Weight = 0 })},
		{"50%junk", with(func(r *AgentReply) { r.Weight = 50 })},
		{"007%", with(func(r *AgentReply) { r.Weight = 7 })},
		{"5x%", none},
		{"25600%", with(func(r *AgentReply) { r.Weight = 25600 })},
		{"25601%", none},
		{"99999999999999999999%", none},
		// Only the first line counts.
		{"up\ndown", with(func(r *AgentReply) { r.Health = "up" })},
		{"#only a reason", with(func(r *AgentReply) { r.Reason = "only a reason" })},
	} {
		if got := ParseAgentReply(tc.line); got != tc.want {
			t.Errorf("ParseAgentReply(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
	if !ParseAgentReply("hello").Empty() || ParseAgentReply("50%").Empty() {
		t.Error("Empty is wrong")
	}
}

// TestMonitorAgent drives a server through an agent's answers and wants each applied as
// HAProxy applies it, an unreachable agent changing nothing and no goroutine left behind.
func TestMonitorAgent(t *testing.T) {
	agent := testenv.StartFakeAgent(t, "up 100%")
	ignore := goleak.IgnoreCurrent()
	s := backend.NewServer(backend.ServerOptions{Name: "r1", Address: "127.0.0.1:5672", Weight: 10})
	st := NewStatuses()
	tr := newTransitions(st)
	m := NewMonitor(MonitorOptions{
		Backend: "b", Servers: []*backend.Server{s}, Statuses: st, Timeout: time.Second,
		Agents:       map[*backend.Server]AgentOptions{s: {Address: agent.Addr(), Interval: 5 * time.Millisecond, Send: "status\n"}},
		OnTransition: tr.record,
		Logger:       slog.New(&logRecorder{}),
	})
	m.Start()
	want := func(what string, ok func() bool) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, holds(what, ok))
	}
	reply := func(r string) func() bool {
		return func() bool { a := st.Status(s).Agent; return a != nil && a.OK && a.Reply == r }
	}
	want("first answer", reply("up 100%"))
	if got := agent.Received(); got != "" && got != "status\n" {
		t.Errorf("agent received %q, want the agent-send string", got)
	}
	want("agent-send received", func() bool { return agent.Received() == "status\n" })

	agent.Set("drain 50% maxconn:7 # deploying")
	want("drain", func() bool { return s.State() == backend.StateDrain && s.Admin() == backend.AdminDrain })
	want("half weight", func() bool { return s.Weight() == 5 && s.MaxConnections() == 7 })

	agent.Set("ready,up,100%")
	want("ready", func() bool { return s.State() == backend.StateUp && s.Weight() == 10 })

	agent.Set("down#db gone")
	want("down", func() bool { return s.State() == backend.StateDown && !s.AgentHealthy() && s.Healthy() })
	// The state changes before OnTransition is called.
	want("the transition to down heard", func() bool { return len(tr.of("r1")) > 0 })
	if got := tr.of("r1"); len(got) != 1 || got[0].to != backend.StateDown {
		t.Errorf("transitions %+v, want one to down", got)
	}
	agent.Set("up")
	want("up", func() bool { return s.State() == backend.StateUp })

	// An agent that is gone leaves the server as it was.
	agent.Set("maint 0%")
	want("maint", func() bool { return s.State() == backend.StateMaint && s.Weight() == 0 })
	agent.Close()
	want("agent failure recorded", func() bool { a := st.Status(s).Agent; return a != nil && !a.OK && a.Error != "" })
	if s.State() != backend.StateMaint || s.Weight() != 0 {
		t.Errorf("unreachable agent changed the server: %v weight %d", s.State(), s.Weight())
	}
	m.Stop()
	goleak.VerifyNone(t, ignore)

	// A reload without the agent forgets what it said of the server's health.
	s.SetAgentHealth(false)
	m2 := NewMonitor(MonitorOptions{Backend: "b", Servers: []*backend.Server{s}, Statuses: st, Logger: slog.New(&logRecorder{})})
	m2.Start()
	m2.Stop()
	if !s.AgentHealthy() || st.Status(s).Agent != nil {
		t.Error("a monitor without the agent kept its verdict")
	}
}

// TestAskAgentTimesOut wants a silent agent to fail the question within the timeout.
func TestAskAgentTimesOut(t *testing.T) {
	silent := testenv.StartFakeBroker(t, testenv.Silent)
	s := newServer("r1", "127.0.0.1:1")
	st := NewStatuses()
	startMonitor(t, MonitorOptions{Servers: []*backend.Server{s}, Statuses: st, Timeout: 50 * time.Millisecond,
		Agents: map[*backend.Server]AgentOptions{s: {Address: silent.Addr(), Interval: time.Hour}},
		Logger: slog.New(&logRecorder{})})
	testenv.Eventually(t, 5*time.Second, func() error {
		a := st.Status(s).Agent
		if a == nil || a.OK || a.Error != fmt.Sprint("timeout after ", 50*time.Millisecond) {
			return fmt.Errorf("agent result %+v", a)
		}
		return nil
	})
}

// FuzzParseAgentReply wants any line parsed without a panic, into values amqplb can apply.
func FuzzParseAgentReply(f *testing.F) {
	for _, s := range []string{"up 75% maxconn:30", "drain#x", "", ",,,", "0%", "maxconn:", "9%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r := ParseAgentReply(line)
		if r.Weight < -1 || r.Weight > maxAgentWeight || r.MaxConn < -1 {
			t.Errorf("ParseAgentReply(%q) = %+v", line, r)
		}
	})
}
