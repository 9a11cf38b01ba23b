package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqplb/amqplb/internal/testenv"
)

// scrape reads amqplb's /metrics with the Prometheus text parser.
func (l *lb) scrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + l.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metric returns the value of the series of family name whose labels include want.
func metric(t testing.TB, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("/metrics has no %s%v", name, want)
	return 0
}

func TestMetricsFollowRealTraffic(t *testing.T) {
	c := testenv.RequireCluster(t)
	l := startLB(t, setup{balance: "first", servers: nodesAsServers(c), check: fastChecks})
	first := c.Nodes[0].Name
	l.waitState(t, first, "up", 10*time.Second)
	for range 10 {
		conn := l.dial(t)
		conn.Close()
	}
	rmq1 := map[string]string{"backend": "rabbitmq", "server": first}
	// The sessions end after their clients close; the totals below are the assertion.
	_ = testenv.Poll(5*time.Second, func() error {
		if n := metric(t, l.scrape(t), "amqplb_server_active_connections", rmq1); n != 0 {
			return fmt.Errorf("%v active connections", n)
		}
		return nil
	})
	fams := l.scrape(t)
	if got := metric(t, fams, "amqplb_server_connections_total", rmq1); got != 10 {
		t.Errorf("connections_total{server=%s} = %v, want 10", first, got)
	}
	if got := metric(t, fams, "amqplb_frontend_connections_total", map[string]string{"frontend": "amqp"}); got != 10 {
		t.Errorf("frontend_connections_total = %v, want 10", got)
	}
	if got := metric(t, fams, "amqplb_server_up", rmq1); got != 1 {
		t.Errorf("server_up = %v", got)
	}
	if got := metric(t, fams, "amqplb_server_state", map[string]string{"server": first, "state": "up"}); got != 1 {
		t.Errorf("server_state{state=up} = %v", got)
	}
	if got := metric(t, fams, "amqplb_health_check_duration_seconds", rmq1); got < 1 {
		t.Errorf("no health check observed: %v", got)
	}
	for _, name := range []string{"amqplb_server_connect_errors_total", "amqplb_server_transitions_total",
		"amqplb_health_check_failures_total", "amqplb_frontend_active_connections", "amqplb_frontend_refused_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// Byte counters move while a long-lived connection is still open.
	conn := l.dial(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	toServer := map[string]string{"server": first, "direction": "to_server"}
	before := metric(t, l.scrape(t), "amqplb_server_bytes_total", toServer)
	body := make([]byte, 256<<10)
	for range 8 {
		if err := ch.Publish("", "nowhere", false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if after := metric(t, l.scrape(t), "amqplb_server_bytes_total", toServer); after-before < 2<<20 {
			return fmt.Errorf("bytes_total{to_server} grew by %v on an open connection, want >= 2 MiB", after-before)
		}
		return nil
	})
}

func postJSON(t testing.TB, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDrainSendsNewConnectionsElsewhere(t *testing.T) {
	c := testenv.RequireCluster(t)
	waitCounts(t, c, zeroCounts(c))
	l := startLB(t, setup{balance: "first", servers: nodesAsServers(c), check: fastChecks, admin: `token = "s3cret"`})
	first, second := c.Nodes[0].Name, c.Nodes[1].Name
	l.waitState(t, first, "up", 10*time.Second)
	l.waitState(t, second, "up", 10*time.Second)
	kept := l.dial(t)
	ch, err := kept.Channel()
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.adminAddr + "/api/v1/backends/rabbitmq/servers/" + first + "/state"
	if code := postJSON(t, url, "", `{"state":"drain"}`); code != http.StatusUnauthorized {
		t.Fatalf("drain without the token: %d, want 401", code)
	}
	if code := postJSON(t, url, "wrong", `{"state":"drain"}`); code != http.StatusUnauthorized {
		t.Fatalf("drain with a wrong token: %d, want 401", code)
	}
	if s := l.servers(t)[first].State; s != "up" {
		t.Fatalf("a refused request changed the state to %q", s)
	}
	if code := postJSON(t, url, "s3cret", `{"state":"drain"}`); code != http.StatusOK {
		t.Fatalf("drain with the token: %d", code)
	}
	l.waitState(t, first, "drain", time.Second)
	for range 3 {
		l.dial(t)
	}
	waitCounts(t, c, map[string]int{first: 1, second: 3, c.Nodes[2].Name: 0})
	// The drained server's existing connection keeps publishing.
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "nowhere", false, false, amqp.Publishing{Body: []byte("x")})
		if err == nil {
			_, err = dc.WaitContext(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("publishing on the drained server's connection: %v", err)
		}
	}
	for _, bad := range []struct{ url, body string }{
		{url, `{"state":"sideways"}`},
		{url, `{"state":`},
		{strings.Replace(url, first, "nope", 1), `{"state":"drain"}`},
		{strings.Replace(url, "/state", "/weight", 1), `{"weight":300}`},
		{strings.Replace(url, "/state", "/weight", 1), `{"weight":"x"}`},
	} {
		if code := postJSON(t, bad.url, "s3cret", bad.body); code < 400 || code > 499 {
			t.Errorf("POST %s %s: %d, want 4xx", bad.url, bad.body, code)
		}
	}
	// shutdown_sessions moves the drained server's last client off it: amqplb closes that
	// connection (end=drained), and the client's reconnect lands elsewhere.
	gone := kept.NotifyClose(make(chan *amqp.Error, 1))
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"state":"drain","shutdown_sessions":true}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		State          string `json:"state"`
		SessionsClosed *int   `json:"sessions_closed"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || answer.State != "drain" || answer.SessionsClosed == nil || *answer.SessionsClosed != 1 {
		t.Fatalf("drain with shutdown_sessions: %d %+v %v; want the one session closed", resp.StatusCode, answer, err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the drained server's connection is still open after shutdown_sessions")
	}
	l.dial(t)
	waitCounts(t, c, map[string]int{first: 0, second: 4, c.Nodes[2].Name: 0})
	drained := regexp.MustCompile(`server=` + first + ` .*end=drained`)
	testenv.Eventually(t, 5*time.Second, func() error {
		if log := l.log.String(); !drained.MatchString(log) {
			return fmt.Errorf("no access-log line for %s with end=drained:\n%s", first, log)
		}
		return nil
	})
	if code := postJSON(t, url, "s3cret", `{"state":"ready"}`); code != http.StatusOK {
		t.Fatalf("ready: %d", code)
	}
	l.waitState(t, first, "up", time.Second)
}

func TestReloadDropsNothing(t *testing.T) {
	c := testenv.RequireCluster(t)
	base := setup{servers: nodesAsServers(c)[:2], check: fastChecks, backend: "retries = 3\nredispatch = true"}
	l := startLB(t, base)
	for _, n := range c.Nodes[:2] {
		l.waitState(t, n.Name, "up", 10*time.Second)
	}
	var open []*amqp.Connection
	var dropped atomic.Int64
	for range 200 {
		conn := l.dial(t)
		go func(ch chan *amqp.Error) {
			if err := <-ch; err != nil {
				dropped.Add(1)
			}
		}(conn.NotifyClose(make(chan *amqp.Error, 1)))
		open = append(open, conn)
	}
	var connects, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := amqp.DialConfig(l.url(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
			connects.Add(1)
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			conn.Close()
		}
	})
	// moreConnects waits until the loop has made n more connects: clients keep coming under each
	// configuration.
	moreConnects := func(n int64) {
		t.Helper()
		from := connects.Load()
		testenv.Eventually(t, time.Minute, func() error {
			if got := connects.Load() - from; got < n {
				return fmt.Errorf("%d connects, want %d", got, n)
			}
			return nil
		})
	}
	three := base
	three.servers = nodesAsServers(c)
	heavier := three
	heavier.servers = append([]server(nil), three.servers...)
	heavier.servers[0].weight = 5
	steps := []struct {
		what    string
		content string
		log     string
	}{
		{"unchanged", base.render(l.addr, l.adminAddr), "msg=reloaded"},
		{"invalid", "[[frontend]]\nname = 1\n", "reload refused"},
		{"add a server", three.render(l.addr, l.adminAddr), "msg=reloaded"},
		{"change a weight", heavier.render(l.addr, l.adminAddr), "msg=reloaded"},
		{"balance leastconn", strings.Replace(heavier.render(l.addr, l.adminAddr), `"roundrobin"`, `"leastconn"`, 1), "msg=reloaded"},
	}
	for i, st := range steps {
		if err := os.WriteFile(l.path, []byte(st.content), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(l.log.String(), st.log)
		if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitLog(t, l, before+1, st.log)
		t.Logf("reload %d (%s) done", i+1, st.what)
		moreConnects(20)
	}
	if w := l.servers(t)[c.Nodes[0].Name].Weight; w != 5 {
		t.Errorf("weight after reload = %d, want 5", w)
	}
	moreConnects(50)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d connects failed across reloads; first: %v", n, connects.Load(), firstErr.Load())
	}
	if got := l.servers(t)[c.Nodes[2].Name].TotalConnections; got == 0 {
		t.Errorf("the server added by a reload got no connections")
	}
	for _, conn := range open {
		if conn.IsClosed() {
			dropped.Add(1)
		}
	}
	if n := dropped.Load(); n != 0 {
		t.Errorf("%d of 200 open connections were dropped by reloads", n)
	}
	fmt.Fprintf(os.Stderr, "reload test: %d connects during 5 reloads\n", connects.Load())
}

func TestReloadAppliesAdminChanges(t *testing.T) {
	c := testenv.RequireCluster(t)
	base := setup{servers: nodesAsServers(c)[:1]}
	l := startLB(t, base)
	oldAdmin := l.adminAddr
	newAdmin := testenv.FreeAddr(t)
	withToken := base
	withToken.admin = `token = "t2"`
	if err := os.WriteFile(l.path, []byte(withToken.render(l.addr, newAdmin)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, l, 1, "msg=reloaded")
	if resp, err := http.Get("http://" + oldAdmin + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("the old admin address still answers after the reload moved it")
	}
	url := "http://" + newAdmin + "/api/v1/backends/rabbitmq/servers/" + c.Nodes[0].Name + "/state"
	if code := postJSON(t, url, "", `{"state":"drain"}`); code != http.StatusUnauthorized {
		t.Errorf("after the reload set a token, a POST without it got %d, want 401", code)
	}
	if code := postJSON(t, url, "t2", `{"state":"ready"}`); code != http.StatusOK {
		t.Errorf("with the new token: %d, want 200", code)
	}
	l.adminAddr = newAdmin // for the cleanup's checks
}
