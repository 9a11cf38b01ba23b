package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqplb/amqplb/internal/amqpwire"
	"github.com/amqplb/amqplb/internal/testenv"
)

// publishBroker is a fake AMQP broker that can be stopped and started again on the same port,
// or frozen (it stops answering, as a SIGSTOPped node does) and thawed. Beyond the handshake it
// serves what the failover loop needs: channel.open, confirm.select, basic.publish (acked when
// its content has arrived), channel.close and connection.close.
type publishBroker struct {
	t     testing.TB
	addr  string
	acked atomic.Int64

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	thawed chan struct{} // closed unless frozen: writes wait on it
	wg     sync.WaitGroup
}

func startPublishBroker(t testing.TB) *publishBroker {
	t.Helper()
	b := &publishBroker{t: t, addr: testenv.FreeAddr(t), thawed: make(chan struct{})} // restarted on the same port
	close(b.thawed)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	return b
}

// start listens on the broker's address (the same port as before after a stop).
func (b *publishBroker) start() error {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.ln, b.addr, b.conns = ln, ln.Addr().String(), map[net.Conn]struct{}{}
	b.mu.Unlock()
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			if b.conns == nil { // stopped meanwhile
				b.mu.Unlock()
				_ = c.Close()
				return
			}
			b.conns[c] = struct{}{}
			b.wg.Add(1)
			b.mu.Unlock()
			go func() {
				defer b.wg.Done()
				defer c.Close()
				b.serve(c)
			}()
		}
	})
	return nil
}

// stop closes the listener and every connection, like a broker that died.
func (b *publishBroker) stop() {
	b.mu.Lock()
	if b.ln != nil {
		_ = b.ln.Close()
	}
	for c := range b.conns {
		_ = c.Close()
	}
	b.ln, b.conns = nil, nil
	b.mu.Unlock()
	b.thaw()
	b.wg.Wait()
}

// freeze makes the broker stop answering: its writes wait until thaw.
func (b *publishBroker) freeze() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.thawed:
		b.thawed = make(chan struct{})
	default: // frozen already
	}
}

func (b *publishBroker) thaw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.thawed: // thawed already
	default:
		close(b.thawed)
	}
}

func (b *publishBroker) write(c net.Conn, ch uint16, m amqpwire.Method) error {
	b.mu.Lock()
	thawed := b.thawed
	b.mu.Unlock()
	<-thawed
	return amqpwire.WriteMethod(c, ch, m)
}

func (b *publishBroker) serve(c net.Conn) {
	r := bufio.NewReader(c)
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	start := &amqpwire.ConnectionStart{VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US",
		ServerProperties: amqpwire.Table{"capabilities": amqpwire.Table{"publisher_confirms": true}}}
	if b.write(c, 0, start) != nil {
		return
	}
	// Start-Ok, Tune-Ok, Open: answer Tune after the first and Open-Ok after the third.
	for i := range 3 {
		f, err := amqpwire.ReadFrame(r, 0)
		if err != nil || f.Type != amqpwire.FrameMethod {
			return
		}
		switch i {
		case 0:
			err = b.write(c, 0, &amqpwire.ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60})
		case 2:
			err = b.write(c, 0, &amqpwire.ConnectionOpenOk{})
		}
		if err != nil {
			return
		}
	}
	confirming := map[uint16]uint64{} // channel -> last delivery tag, for channels in confirm mode
	remaining := map[uint16]uint64{}  // body octets still due per channel
	ack := func(ch uint16) error {
		tag, ok := confirming[ch]
		if !ok {
			return nil
		}
		tag++
		confirming[ch] = tag
		b.acked.Add(1)
		// basic.ack: the delivery tag, then the bits (multiple = false).
		return b.write(c, ch, &amqpwire.UnknownMethod{Class: 60, Method: 80, Args: append(binary.BigEndian.AppendUint64(nil, tag), 0)})
	}
	for {
		f, err := amqpwire.ReadFrame(r, 0)
		if err != nil {
			return
		}
		switch f.Type {
		case amqpwire.FrameHeader:
			if len(f.Payload) < 12 {
				return
			}
			if size := binary.BigEndian.Uint64(f.Payload[4:12]); size > 0 {
				remaining[f.Channel] = size
				continue
			}
			err = ack(f.Channel)
		case amqpwire.FrameBody:
			left := remaining[f.Channel] - uint64(len(f.Payload))
			remaining[f.Channel] = left
			if left == 0 {
				err = ack(f.Channel)
			}
		case amqpwire.FrameMethod:
			m, derr := amqpwire.DecodeMethod(f.Payload)
			if derr != nil {
				return
			}
			switch m := m.(type) {
			case *amqpwire.ConnectionClose:
				_ = b.write(c, 0, &amqpwire.ConnectionCloseOk{})
				_, _ = io.Copy(io.Discard, r)
				return
			case *amqpwire.UnknownMethod:
				switch [2]uint16{m.Class, m.Method} {
				case [2]uint16{20, 10}: // channel.open
					err = b.write(c, f.Channel, &amqpwire.UnknownMethod{Class: 20, Method: 11, Args: []byte{0, 0, 0, 0}})
				case [2]uint16{85, 10}: // confirm.select
					confirming[f.Channel] = 0
					err = b.write(c, f.Channel, &amqpwire.UnknownMethod{Class: 85, Method: 11})
				case [2]uint16{20, 40}: // channel.close
					err = b.write(c, f.Channel, &amqpwire.UnknownMethod{Class: 20, Method: 41})
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func TestFailoverStoppedBroker(t *testing.T) {
	checkLeaks(t)
	b := startPublishBroker(t)
	f := &Failover{
		Duration: 3 * time.Second, FaultAt: time.Second, RecoverAt: 2 * time.Second,
		Workers: 2, Confirm: true,
		FaultFunc:   func(context.Context) error { b.stop(); return nil },
		RecoverFunc: func(context.Context) error { return b.start() },
	}
	var progress bytes.Buffer
	figs, err := f.Run(context.Background(), Target{Name: "fake", Addr: b.addr}, &progress)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	tl := f.LastTimelines()["fake"]
	if tl == nil {
		t.Fatal("no timeline kept")
	}
	var out strings.Builder
	if err := tl.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("figures %+v\n%s%s", figs, progress.String(), out.String())
	checkOutage(t, tl, figs, 0.9)
	writeTimelineArtifact(t, tl)
	if b.acked.Load() == 0 {
		t.Error("the broker acked no publish")
	}
	if tl.Errors["refused"] == 0 {
		t.Errorf("failures by kind %v: want refused connections while the broker is down", tl.Errors)
	}
	if got := len(f.Timelines()["fake"]); got != 1 {
		t.Errorf("Timelines holds %d rounds, want 1", got)
	}
}

// TestFailoverFrozenBroker freezes the broker, as SIGSTOP does: connections are accepted but
// never answered, and attempts under way hang. Only the attempt timeout ends them.
func TestFailoverFrozenBroker(t *testing.T) {
	checkLeaks(t)
	b := startPublishBroker(t)
	f := &Failover{
		Duration: 3 * time.Second, FaultAt: time.Second, RecoverAt: 2 * time.Second,
		Workers: 3, Confirm: true, AttemptTimeout: 300 * time.Millisecond,
		FaultFunc:   func(context.Context) error { b.freeze(); return nil },
		RecoverFunc: func(context.Context) error { b.thaw(); return nil },
	}
	figs, err := f.Run(context.Background(), Target{Name: "frozen", Addr: b.addr}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tl := f.LastTimelines()["frozen"]
	var out strings.Builder
	_ = tl.Print(&out)
	t.Logf("figures %+v\n%s", figs, out.String())
	// Attempts started in the last 300 ms before the thaw succeed late: recovery comes up to
	// one attempt timeout early.
	checkOutage(t, tl, figs, 0.7)
	writeTimelineArtifact(t, tl)
	if tl.Errors["timeout"] == 0 {
		t.Errorf("failures by kind %v: want timeouts", tl.Errors)
	}
	if s, _ := figs.Get("slowest_attempt_s"); s < 0.29 || s > 1 {
		t.Errorf("slowest attempt %.3fs, want about the 0.3 s attempt timeout", s)
	}
}

// writeTimelineArtifact writes tl's chart to $BENCH_TIMELINE_DIR/TARGET.svg when that is set,
// to look at the chart of a real run.
func writeTimelineArtifact(t *testing.T, tl *Timeline) {
	dir := os.Getenv("BENCH_TIMELINE_DIR")
	if dir == "" {
		return
	}
	var b bytes.Buffer
	if err := WriteTimelineSVG(&b, map[string]*Timeline{tl.Target: tl}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tl.Target+".svg"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkLeaks fails t if goroutines it started outlive it (its cleanups included).
func checkLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// checkOutage checks a run with the fault at 1 s and the recovery at 2 s of 3: clean before
// the fault, failing during the outage, clean again after, and recovery_s about minRecovery
// to 1.6 s.
func checkOutage(t *testing.T, tl *Timeline, figs Figures, minRecovery float64) {
	t.Helper()
	if len(tl.Buckets) != 30 || tl.Bucket != 100*time.Millisecond {
		t.Fatalf("%d buckets of %v, want 30 of 100ms", len(tl.Buckets), tl.Bucket)
	}
	if tl.FaultAt < time.Second || tl.FaultAt > 1100*time.Millisecond || tl.RecoverAt < 2*time.Second || tl.RecoverAt > 2100*time.Millisecond {
		t.Errorf("fault at %v, recovery at %v; want about 1s and 2s", tl.FaultAt, tl.RecoverAt)
	}
	sum := func(from, to int) (ok, failed int) {
		for _, b := range tl.Buckets[from:to] {
			ok += b.Successes
			failed += b.Failures
		}
		return ok, failed
	}
	if ok, failed := sum(0, 9); ok == 0 || failed != 0 {
		t.Errorf("before the fault: %d ok, %d failed; want only successes", ok, failed)
	}
	if ok, failed := sum(12, 17); ok != 0 || failed == 0 {
		t.Errorf("during the outage: %d ok, %d failed; want only failures", ok, failed)
	}
	if ok, failed := sum(23, 29); ok == 0 || failed != 0 {
		t.Errorf("after the recovery: %d ok, %d failed; want only successes", ok, failed)
	}
	want := map[string]func(float64) bool{
		"failures_after_fault": func(v float64) bool { return v > 0 },
		"failures_total":       func(v float64) bool { return v > 0 },
		"recovered":            func(v float64) bool { return v == 1 },
		"recovery_s":           func(v float64) bool { return v >= minRecovery && v <= 1.6 },
		"attempts":             func(v float64) bool { return v > 0 },
	}
	for name, ok := range want {
		if v, found := figs.Get(name); !found || !ok(v) {
			t.Errorf("figure %s = %v (found %v): out of range", name, v, found)
		}
	}
}

func TestFailoverUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t)
	f := &Failover{Duration: time.Second, FaultFunc: func(context.Context) error {
		t.Error("the fault ran against an unreachable target")
		return nil
	}}
	_, err := f.Run(context.Background(), Target{Name: "gone", Addr: addr}, io.Discard)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Target.Name != "gone" {
		t.Fatalf("Run = %v, want an UnreachableError for target gone", err)
	}
	if len(f.Timelines()) != 0 {
		t.Error("an unreachable round left a timeline")
	}
}

func TestFailoverFailingFaultCommandStillRecovers(t *testing.T) {
	b := startPublishBroker(t)
	var recovered atomic.Bool
	f := &Failover{
		Duration: 600 * time.Millisecond, FaultAt: 200 * time.Millisecond, RecoverAt: 400 * time.Millisecond,
		Workers: 1, Fault: "echo oops >&2; exit 3",
		RecoverFunc: func(context.Context) error { recovered.Store(true); return nil },
	}
	_, err := f.Run(context.Background(), Target{Name: "fake", Addr: b.addr}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("Run = %v, want the fault command's failure with its output", err)
	}
	if !recovered.Load() {
		t.Error("the recovery did not run after a failed fault")
	}
}

func TestFailoverRecoversAfterCancel(t *testing.T) {
	b := startPublishBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	var recovered atomic.Bool
	f := &Failover{
		Duration: 10 * time.Second, FaultAt: 200 * time.Millisecond, RecoverAt: 9 * time.Second, Workers: 1,
		FaultFunc:   func(context.Context) error { cancel(); return nil },
		RecoverFunc: func(ctx context.Context) error { recovered.Store(ctx.Err() == nil); return nil },
	}
	start := time.Now()
	_, err := f.Run(ctx, Target{Name: "fake", Addr: b.addr}, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if !recovered.Load() {
		t.Error("a cancelled run left the fault in place (recovery not run, or with a dead context)")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a cancelled run took %v", d)
	}
}

func TestFailoverBadSchedule(t *testing.T) {
	for _, f := range []*Failover{
		{Duration: time.Second, FaultAt: 2 * time.Second, RecoverAt: 3 * time.Second},
		{Duration: 5 * time.Second, FaultAt: 2 * time.Second, RecoverAt: time.Second},
	} {
		if _, err := f.Run(context.Background(), Target{Name: "x", Addr: "127.0.0.1:1"}, io.Discard); err == nil {
			t.Errorf("%+v: no error for a bad schedule", f)
		}
	}
}

// TestTimelineRecovery checks the recovery rule on hand-made timelines.
func TestTimelineRecovery(t *testing.T) {
	ok := Bucket{Successes: 5}
	bad := Bucket{Failures: 3}
	mixed := Bucket{Successes: 2, Failures: 1}
	none := Bucket{}
	const ms = time.Millisecond
	for _, tc := range []struct {
		name          string
		faultAt       time.Duration
		afterFault    int // FailuresAfterFault
		buckets       []Bucket
		want          time.Duration
		wantRecovered bool
	}{
		{"no failure", 250 * ms, 0, []Bucket{ok, ok, ok, ok, ok}, 0, true},
		{"outage", 200 * ms, 4, []Bucket{ok, ok, bad, none, mixed, ok, ok}, 300 * ms, true},
		{"fault bucket still clean", 200 * ms, 3, []Bucket{ok, ok, ok, bad, ok}, 200 * ms, true},
		{"mid-bucket fault", 250 * ms, 3, []Bucket{ok, ok, mixed, bad, none, ok}, 250 * ms, true},
		{"only in-flight failures", 200 * ms, 2, []Bucket{ok, mixed, ok, ok}, 100 * ms, true},
		{"never recovered", 100 * ms, 9, []Bucket{ok, bad, bad, none}, 0, false},
		{"no fault", -1, 0, []Bucket{ok, bad, ok}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := &Timeline{Bucket: 100 * ms, Duration: time.Duration(len(tc.buckets)) * 100 * ms,
				FaultAt: tc.faultAt, RecoverAt: -1, Buckets: tc.buckets, FailuresAfterFault: tc.afterFault}
			got, recovered := tl.Recovery()
			if got != tc.want || recovered != tc.wantRecovered {
				t.Errorf("Recovery() = %v, %v; want %v, %v", got, recovered, tc.want, tc.wantRecovered)
			}
		})
	}
}

func TestTimelineBuckets(t *testing.T) {
	const ms = time.Millisecond
	atts := []attempt{
		{start: 10 * ms, took: 5 * ms},
		{start: 20 * ms, took: 7 * ms},
		{start: 90 * ms, took: 9 * ms},
		{start: 150 * ms, took: 300 * ms, fail: "timeout"}, // in flight at the fault, ends after
		{start: 210 * ms, took: ms, fail: "refused"},
		{start: 250 * ms, took: 2 * ms, fail: "refused"},
		{start: 380 * ms, took: 4 * ms},
	}
	tl := newTimeline("x", 100*ms, 400*ms, 200*ms, 350*ms, atts)
	want := []Bucket{
		{Successes: 3, P50: 7 * ms, Max: 9 * ms},
		{Failures: 1, P50: 300 * ms, Max: 300 * ms},
		{Failures: 2, P50: ms, Max: 2 * ms},
		{Successes: 1, P50: 4 * ms, Max: 4 * ms},
	}
	if len(tl.Buckets) != len(want) {
		t.Fatalf("%d buckets, want %d", len(tl.Buckets), len(want))
	}
	for i := range want {
		if tl.Buckets[i] != want[i] {
			t.Errorf("bucket %d = %+v, want %+v", i, tl.Buckets[i], want[i])
		}
	}
	if tl.FailuresAfterFault != 3 || tl.Errors["refused"] != 2 || tl.Errors["timeout"] != 1 {
		t.Errorf("failures after fault %d, errors %v", tl.FailuresAfterFault, tl.Errors)
	}
	if rec, ok := tl.Recovery(); !ok || rec != 100*ms {
		t.Errorf("Recovery() = %v, %v; want 100ms, true", rec, ok)
	}
	figs := tl.figures()
	for name, want := range map[string]float64{"attempts": 7, "failures_total": 3, "failures_after_fault": 3,
		"recovery_s": 0.1, "recovered": 1, "slowest_attempt_s": 0.3} {
		if got, _ := figs.Get(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestTimelinePrintAndSVG(t *testing.T) {
	const ms = time.Millisecond
	mk := func(name string, outage int) *Timeline {
		var atts []attempt
		for i := range 60 {
			start := time.Duration(i) * 100 * ms
			for k := range 10 {
				a := attempt{start: start + time.Duration(k)*ms, took: 3 * ms}
				if i >= 20 && i < 20+outage {
					a.fail, a.took = "refused", ms
				}
				atts = append(atts, a)
			}
		}
		return newTimeline(name, 100*ms, 6*time.Second, 2*time.Second, 4*time.Second, atts)
	}
	tls := map[string]*Timeline{"direct": mk("direct", 22), "amqplb": mk("amqplb", 3), "a<b&c": mk("a<b&c", 70)}
	var out strings.Builder
	if err := tls["direct"].Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fault at 2.00s", "recovered 2.20s after the fault", "refused 220", "F "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Print lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	_ = tls["a<b&c"].Print(&out)
	if !strings.Contains(out.String(), "not recovered") {
		t.Errorf("Print of an unrecovered timeline:\n%s", out.String())
	}

	var svg bytes.Buffer
	if err := WriteTimelineSVG(&svg, tls, "direct"); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("BENCH_TIMELINE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "synthetic.svg"), svg.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	var texts []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, "|")
	// direct first (as ordered), then the rest by name.
	iDirect, iAmqplb, iOdd := strings.Index(all, "direct"), strings.Index(all, "amqplb"), strings.Index(all, "a<b&c")
	if iDirect < 0 || iAmqplb < 0 || iOdd < 0 || !(iDirect < iOdd && iOdd < iAmqplb) {
		t.Errorf("panel order wrong or names missing: %q", all)
	}
	for _, want := range []string{"recovered 2.2 s after the fault", "not recovered", "fault", "recovery"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}

	// Several rounds: the median recovery is drawn, with its round number.
	svg.Reset()
	rounds := map[string][]*Timeline{"amqplb": {tls["a<b&c"], tls["amqplb"], tls["direct"]}, "none": nil}
	if err := WriteTimelinesSVG(&svg, rounds); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg.String(), "amqplb (round 3 of 3, the median recovery)") || !strings.Contains(svg.String(), "2.2 s") {
		t.Errorf("WriteTimelinesSVG did not draw round 3 (recovery 2.2 s of 0.3, 2.2 and never):\n%s", svg.String()[:min(svg.Len(), 2000)])
	}
	svg.Reset()
	if err := WriteTimelinesSVG(&svg, nil); err != nil || xml.Unmarshal(svg.Bytes(), new(struct{})) != nil {
		t.Errorf("an empty chart: %v\n%s", err, svg.String())
	}
}
