package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/testenv"
)

// Issue 14, item 3: HAProxy's agent checks. A haproxy.cfg whose servers have agent-check runs
// against the real cluster, with a fake agent per server answering what the test sets.

// agentOf reads the agent field of server name from the admin API.
func (l *lb) agentOf(t testing.TB, name string) (reply, status string, weight int) {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/api/v1/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Backends []struct {
			Servers []struct {
				Name   string `json:"name"`
				Weight int    `json:"weight"`
				Agent  *struct {
					Status string `json:"status"`
					Reply  string `json:"reply"`
				} `json:"agent"`
			} `json:"servers"`
		} `json:"backends"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, b := range body.Backends {
		for _, s := range b.Servers {
			if s.Name == name && s.Agent != nil {
				return s.Agent.Reply, s.Agent.Status, s.Weight
			}
			if s.Name == name {
				return "", "", s.Weight
			}
		}
	}
	t.Fatalf("no server %s", name)
	return "", "", 0
}

func TestAgentCheckDrainWeightReady(t *testing.T) {
	c := testenv.RequireCluster(t)
	agents := make([]*testenv.FakeAgent, len(c.Nodes))
	var servers strings.Builder
	for i, n := range c.Nodes {
		agents[i] = testenv.StartFakeAgent(t, "up ready 100%")
		fmt.Fprintf(&servers, "    server %s %s check weight 100 agent-check agent-addr 127.0.0.1 agent-port %d agent-inter 100ms agent-send \"status\\n\"\n",
			n.Name, n.AMQPAddr(), agents[i].Port())
	}
	bind := testenv.FreeAddr(t)
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s
    timeout check 2s

listen rabbitmq
    bind %s
    balance roundrobin
    default-server inter 500ms
%s`, bind, servers.String())
	l := startLBFile(t, "agent.cfg", cfg, bind)
	first := c.Nodes[0].Name
	for _, n := range c.Nodes {
		l.waitState(t, n.Name, "up", 15*time.Second)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if reply, status, _ := l.agentOf(t, first); reply != "up ready 100%" || status != "ok" {
			return fmt.Errorf("agent field: reply %q status %q", reply, status)
		}
		if got := agents[0].Received(); got != "status\n" {
			return fmt.Errorf("agent received %q, want agent-send's string", got)
		}
		return nil
	})

	// drain: the server shows drain, and new connections avoid it.
	agents[0].Set("drain #deploying")
	l.waitState(t, first, "drain", 5*time.Second)
	if reply, _, _ := l.agentOf(t, first); reply != "drain #deploying" {
		t.Errorf("agent reply in the API = %q", reply)
	}
	waitCounts(t, c, zeroCounts(c))
	url := "amqp://guest:guest@" + bind + "/"
	for range 4 {
		dialURL(t, url, nil)
	}
	want := zeroCounts(c)
	for _, n := range c.Nodes[1:] {
		want[n.Name] = 4 / (len(c.Nodes) - 1)
	}
	waitCounts(t, c, want)

	// 50%: the weight halves (HAProxy: a percentage of the configured weight); ready brings it back.
	agents[0].Set("ready 50%")
	l.waitEligible(t, first, 5*time.Second)
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, _, w := l.agentOf(t, first); w != 50 {
			return fmt.Errorf("weight %d, want 50", w)
		}
		return nil
	})

	// down takes it out as a failed check would; up brings it back at full weight.
	agents[0].Set("down#disk almost full")
	l.waitState(t, first, "down", 5*time.Second)
	agents[0].Set("up 100%")
	l.waitState(t, first, "up", 5*time.Second)
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, _, w := l.agentOf(t, first); w != 100 {
			return fmt.Errorf("weight %d, want 100", w)
		}
		return nil
	})

	// amqplb holds no agent connection between two questions.
	testenv.Eventually(t, 5*time.Second, func() error {
		for i, a := range agents {
			if a.Active() != 0 || a.Accepted() < 5 {
				return fmt.Errorf("agent %d: %d open, %d accepted", i, a.Active(), a.Accepted())
			}
		}
		return nil
	})
}
