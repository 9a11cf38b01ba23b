package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

func TestParseConnectionCount(t *testing.T) {
	text := `# HELP rabbitmq_connections Connections currently open
# TYPE rabbitmq_connections gauge
rabbitmq_connections 17
# TYPE rabbitmq_connections_opened_total counter
rabbitmq_connections_opened_total 412
rabbitmq_connection_channels 3
`
	if n, err := ParseConnectionCount(strings.NewReader(text)); err != nil || n != 17 {
		t.Fatalf("got %d, %v; want 17", n, err)
	}
	labelled := "rabbitmq_connections{vhost=\"/\",node=\"rmq1\"} 5\nrabbitmq_connections{vhost=\"a\"} 2 1700000000\n"
	if n, err := ParseConnectionCount(strings.NewReader(labelled)); err != nil || n != 7 {
		t.Fatalf("labelled: got %d, %v; want 7", n, err)
	}
	for _, bad := range []string{"", "rabbitmq_connections_opened_total 3\n", "rabbitmq_connections x\n", "rabbitmq_connections\n"} {
		if n, err := ParseConnectionCount(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: got %d, want an error", bad, n)
		}
	}
}

func TestParseNodeAndStep(t *testing.T) {
	n, err := ParseNode("rmq1=http://127.0.0.1:15692/metrics")
	if err != nil || n.Name != "rmq1" || n.MetricsURL != "http://127.0.0.1:15692/metrics" {
		t.Fatalf("ParseNode: %+v, %v", n, err)
	}
	for _, bad := range []string{"rmq1", "=http://x", "rmq1=127.0.0.1:15692"} {
		if _, err := ParseNode(bad); err == nil {
			t.Errorf("ParseNode(%q): no error", bad)
		}
	}
	s, err := ParseStep("rmq1 drain=rabbitmq-upgrade -n a@b drain")
	if err != nil || s.Label != "rmq1 drain" || s.Command != "rabbitmq-upgrade -n a@b drain" {
		t.Fatalf("ParseStep: %+v, %v", s, err)
	}
	for _, bad := range []string{"drain", "=cmd", "drain= "} {
		if _, err := ParseStep(bad); err == nil {
			t.Errorf("ParseStep(%q): no error", bad)
		}
	}
}

// kickBroker is a fake RabbitMQ node for the rolling workload: it completes the AMQP handshake
// and holds connections. drain closes every open connection with 320 CONNECTION_FORCED, as
// rabbitmq-upgrade drain does, and refuses new ones (Close 320 in answer to Open) until revive.
type kickBroker struct {
	mu       sync.Mutex
	draining bool
	conns    map[net.Conn]chan struct{} // closed to kick
}

func (k *kickBroker) open() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.conns)
}

func (k *kickBroker) drain(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.draining = true
	for c, kick := range k.conns {
		close(kick)
		delete(k.conns, c)
	}
	return nil
}

func (k *kickBroker) revive(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.draining = false
	return nil
}

func (k *kickBroker) handle(c net.Conn) {
	r := bufio.NewReader(c)
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	read := func() amqpwire.Method {
		_, m, err := amqpwire.ReadMethod(r, amqpwire.DefaultMaxFrameSize)
		if err != nil {
			return nil
		}
		return m
	}
	start := &amqpwire.ConnectionStart{VersionMajor: 0, VersionMinor: 9, ServerProperties: amqpwire.Table{"product": "kick"}, Mechanisms: "PLAIN", Locales: "en_US"}
	if amqpwire.WriteMethod(c, 0, start) != nil || read() == nil {
		return
	}
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60}) != nil {
		return
	}
	for range 2 { // Tune-Ok, Open
		if read() == nil {
			return
		}
	}
	forced := &amqpwire.ConnectionClose{ReplyCode: amqpwire.ReplyConnectionForced, ReplyText: "CONNECTION_FORCED - Node was put into maintenance mode"}
	k.mu.Lock()
	if k.draining {
		k.mu.Unlock()
		_ = amqpwire.WriteMethod(c, 0, forced)
		read()
		return
	}
	kick := make(chan struct{})
	k.conns[c] = kick
	k.mu.Unlock()
	if amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionOpenOk{}) != nil {
		return
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			m := read()
			if m == nil {
				return
			}
			if _, ok := m.(*amqpwire.ConnectionClose); ok {
				_ = amqpwire.WriteMethod(c, 0, &amqpwire.ConnectionCloseOk{})
				return
			}
		}
	}()
	select {
	case <-kick:
		_ = amqpwire.WriteMethod(c, 0, forced)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		<-closed
	case <-closed:
	}
	k.mu.Lock()
	delete(k.conns, c)
	k.mu.Unlock()
}

// metricsServer serves count() as the rabbitmq_connections gauge.
func metricsServer(t *testing.T, count func() int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE rabbitmq_connections gauge\nrabbitmq_connections %d\nrabbitmq_connections_opened_total 999\n", count())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func TestRollingReconnectsAfter320(t *testing.T) {
	kb := &kickBroker{conns: map[net.Conn]chan struct{}{}}
	b := testenv.StartFakeBroker(t, kb.handle)
	const clients = 6
	r := &Rolling{
		Clients: clients,
		Nodes:   []Node{{Name: "n1", MetricsURL: metricsServer(t, kb.open)}},
		Steps: []Step{
			{Label: "n1 drain", Func: kb.drain},
			{Label: "n1 revive", Func: kb.revive},
		},
		StepGap:          300 * time.Millisecond,
		Duration:         time.Second,
		Sample:           50 * time.Millisecond,
		RecoveryDelay:    20 * time.Millisecond,
		MaxRecoveryDelay: 40 * time.Millisecond,
		DialTimeout:      2 * time.Second,
	}
	var progress bytes.Buffer
	figs, err := r.Run(context.Background(), Target{Name: "fake", Addr: b.Addr()}, &progress)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	get := func(name string) float64 {
		v, ok := figs.Get(name)
		if !ok {
			t.Fatalf("no figure %s in %v", name, figs)
		}
		return v
	}
	if got := get("closes_320"); got != clients {
		t.Errorf("closes_320 = %v, want %d", got, clients)
	}
	if got := get("reconnects"); got != clients {
		t.Errorf("reconnects = %v, want %d", got, clients)
	}
	if got := get("failed_connects"); got < 1 {
		t.Errorf("failed_connects = %v, want at least 1 (connects are refused while draining)", got)
	}
	if got := get("final_n1"); got != clients {
		t.Errorf("final_n1 = %v, want %d", got, clients)
	}
	if get("evened") != 1 {
		t.Errorf("not even at the end")
	}
	tl := r.Timelines()["fake"][0]
	if len(tl.Steps) != 2 || tl.Steps[0].Label != "n1 drain" || tl.Steps[1].At <= tl.Steps[0].At {
		t.Errorf("steps: %+v", tl.Steps)
	}
	var out bytes.Buffer
	if err := tl.Print(&out); err != nil || !strings.Contains(out.String(), "320×6") {
		t.Errorf("Print: %v\n%s", err, out.String())
	}
	// Every client closed its connection at the end.
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := kb.open(); n != 0 {
			return fmt.Errorf("%d connections still open", n)
		}
		return nil
	})
}

func TestRollingUnreachable(t *testing.T) {
	r := &Rolling{Clients: 2, Nodes: []Node{{Name: "n1", MetricsURL: "http://127.0.0.1:1/metrics"}}, DialTimeout: time.Second}
	_, err := r.Run(context.Background(), Target{Name: "gone", Addr: testenv.FreeAddr(t)}, nil)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an UnreachableError", err)
	}
	if err := (&Rolling{}).Validate(); err == nil {
		t.Error("Validate without nodes: no error")
	}
}

// sampleTimeline is a rolling round through 3 nodes: even, rmq1 drained and stopped (its
// connections go to the others), back, then even again 2 s after the last step.
func sampleTimeline() *RollingTimeline {
	tl := &RollingTimeline{Target: "amqplb", Nodes: []string{"rmq1", "rmq2", "rmq3"}, Clients: 90, Even: 0.2,
		Closes: map[string]int{"320": 30, "lost 501": 2}, Reconnects: 32, FailedConnects: 4, Duration: 20 * time.Second}
	counts := func(at time.Duration) []int {
		switch {
		case at < 5*time.Second:
			return []int{30, 30, 30}
		case at < 9*time.Second:
			return []int{-1, 45, 45}
		case at < 12*time.Second:
			return []int{0, 45, 45}
		case at < 14*time.Second:
			return []int{20, 35, 35}
		default:
			return []int{29, 31, 30}
		}
	}
	for at := time.Duration(0); at < tl.Duration; at += 500 * time.Millisecond {
		tl.Samples = append(tl.Samples, NodeSample{At: at, Counts: counts(at)})
	}
	tl.Steps = []StepMark{{At: 5 * time.Second, Took: time.Second, Label: "rmq1 drain"}, {At: 7 * time.Second, Label: "rmq1 stop_app"},
		{At: 9 * time.Second, Label: "rmq1 start_app"}, {At: 11 * time.Second, Took: time.Second, Label: "rmq1 revive", Err: "exit status 1"}}
	tl.LastStepAt = 12 * time.Second
	tl.Events = []RollingEvent{{At: 5100 * time.Millisecond, Kind: EventClose, Code: "320"}, {At: 5200 * time.Millisecond, Kind: EventFailed, Code: "refused"},
		{At: 5300 * time.Millisecond, Kind: EventReconnect}}
	return tl
}

func TestRollingTimelineFigures(t *testing.T) {
	tl := sampleTimeline()
	d, ok := tl.EvenAfter()
	if !ok || d != 2*time.Second {
		t.Fatalf("EvenAfter = %v, %v; want 2s", d, ok)
	}
	figs := tl.Figures()
	want := map[string]float64{"closes_320": 30, "closes_other": 2, "reconnects": 32, "failed_connects": 4, "peak_node": 45,
		"final_rmq1": 29, "final_rmq2": 31, "final_spread": 2, "even_after_s": 2, "evened": 1}
	for name, v := range want {
		if got, ok := figs.Get(name); !ok || got != v {
			t.Errorf("%s = %v (%v), want %v", name, got, ok, v)
		}
	}
	// Uneven at the end: not evened, and even_after_s is the whole tail.
	tl.Samples = append(tl.Samples, NodeSample{At: 19900 * time.Millisecond, Counts: []int{0, 45, 45}})
	figs = tl.Figures()
	if v, _ := figs.Get("evened"); v != 0 {
		t.Errorf("evened = %v, want 0", v)
	}
	if v, _ := figs.Get("even_after_s"); v != 8 {
		t.Errorf("even_after_s = %v, want 8", v)
	}
	var out bytes.Buffer
	if err := tl.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"rmq1 drain", "FAILED: exit status 1", "rmq1    -", "not even"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("Print lacks %q:\n%s", s, out.String())
		}
	}
}

func TestWriteRollingSVG(t *testing.T) {
	a, h := sampleTimeline(), sampleTimeline()
	h.Target = "haproxy"
	var b bytes.Buffer
	if err := WriteRollingSVG(&b, map[string][]*RollingTimeline{"haproxy": {h}, "amqplb": {a}}, "amqplb", "haproxy"); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if err := xml.Unmarshal(b.Bytes(), new(struct{})); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if strings.Index(svg, ">amqplb<") > strings.Index(svg, ">haproxy<") {
		t.Error("panels not in the order asked")
	}
	// rmq1 has a gap (drained and stopped): two lines for it, one for each other node, per panel.
	if n := strings.Count(svg, "<polyline"); n != 2*4 {
		t.Errorf("%d polylines, want 8", n)
	}
	for _, s := range []string{"rmq1 revive", "320×30", "even 2.0 s after the last step", "Rolling restart"} {
		if !strings.Contains(svg, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
	var empty bytes.Buffer
	if err := WriteRollingSVG(&empty, nil); err != nil || xml.Unmarshal(empty.Bytes(), new(struct{})) != nil {
		t.Errorf("empty chart: %v", err)
	}
}
