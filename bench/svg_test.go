package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pubsubSample is a realistic pubsub report: direct, amqplb a little slower, haproxy down.
func pubsubSample() *Report {
	round := func(i int, scale float64) Round {
		f := 1 + 0.03*float64(i%3-1)
		fs := Figures{
			{Name: "published", Unit: "msg/s", Value: 48000 * scale * f, Higher: true},
			{Name: "confirmed", Unit: "msg/s", Value: 47500 * scale * f, Higher: true},
			{Name: "consumed", Unit: "msg/s", Value: 47000 * scale * f, Higher: true},
		}
		fs = append(fs, summaryFigures("latency_", Summary{P50: 1.2 / scale * f, P75: 1.9 / scale, P95: 4.1 / scale * f, P99: 9.5 / scale, Max: 61 / scale * f})...)
		fs = append(fs, summaryFigures("confirm_latency_", Summary{P50: 0.8 / scale, P75: 1.1 / scale * f, P95: 2.5 / scale, P99: 5.2 / scale * f, Max: 30 / scale})...)
		fs = append(fs,
			Figure{Name: "errors_publish", Unit: "count"},
			Figure{Name: "errors_consume", Unit: "count", Value: float64(i % 2)},
		)
		return Round{Round: i + 1, Figures: fs}
	}
	r := &Report{
		Workload: "pubsub",
		Targets:  []Target{{"direct", "127.0.0.1:5673"}, {"amqplb", "127.0.0.1:5672"}, {"haproxy", "127.0.0.1:5680"}},
		Rounds:   map[string][]Round{},
	}
	for i := range 3 {
		r.Rounds["direct"] = append(r.Rounds["direct"], round(i, 1))
		r.Rounds["amqplb"] = append(r.Rounds["amqplb"], round(i, 0.93))
		r.Rounds["haproxy"] = append(r.Rounds["haproxy"], Round{Round: i + 1, Error: "unreachable", Unreachable: true})
	}
	return r
}

func stormSample() *Report {
	r := &Report{Workload: "storm", Targets: []Target{{"direct", "a:1"}, {"amqplb", "a:2"}}, Rounds: map[string][]Round{}}
	for i := range 3 {
		for ti, t := range r.Targets {
			k := 1 + 0.1*float64(ti) + 0.02*float64(i)
			r.Rounds[t.Name] = append(r.Rounds[t.Name], Round{Round: i + 1, Figures: Figures{
				{Name: "connections", Unit: "conn/s", Value: 850 / k, Higher: true},
				{Name: "handshake_p50", Unit: "ms", Value: 9 * k},
				{Name: "handshake_p99", Unit: "ms", Value: 25 * k},
				{Name: "handshake_max", Unit: "ms", Value: 31 * k},
				{Name: "failures", Unit: "count"},
			}})
		}
	}
	return r
}

// checkSVG parses s as XML and returns its <text> contents.
func checkSVG(t *testing.T, s string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var texts []string
	inText := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(tok))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Error("SVG holds NaN or Inf coordinates")
	}
	return texts
}

func TestWriteSVG(t *testing.T) {
	for name, rep := range map[string]*Report{"pubsub": pubsubSample(), "storm": stormSample(), "small": smallReport()} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := rep.WriteSVG(&b); err != nil {
				t.Fatal(err)
			}
			if dir := os.Getenv("BENCH_SVG_DIR"); dir != "" { // to look at the charts
				if err := os.WriteFile(filepath.Join(dir, name+".svg"), b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			texts := strings.Join(checkSVG(t, b.String()), "|")
			for _, tg := range rep.Targets {
				if !strings.Contains(texts, tg.Name) {
					t.Errorf("legend lacks %s", tg.Name)
				}
			}
			if !strings.Contains(texts, "amqplb-bench "+rep.Workload) {
				t.Error("no title")
			}
		})
	}
}

func TestSVGPanels(t *testing.T) {
	panels := pubsubSample().panels()
	var got []string
	for _, p := range panels {
		got = append(got, fmt.Sprintf("%s[%s]%s log=%v", p.title, p.unit, strings.Join(p.labels, ","), p.log))
	}
	want := []string{
		"Throughput[msg/s]published,confirmed,consumed log=false",
		"Consumer latency[ms]p50,p75,p95,p99,max log=true",
		"Confirm latency[ms]p50,p75,p95,p99,max log=true",
		"Counts[count]errors consume log=false", // errors_publish is 0 everywhere: left out
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("panels:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	a := newSVGAxis(panels[0], 100, 300)
	if a.y(0) != 300 || a.y(a.hi) != 100 || a.hi < 48000*1.03 {
		t.Errorf("linear axis: hi %v, y(0) %v", a.hi, a.y(0))
	}
	l := newSVGAxis(panels[1], 100, 300)
	if l.lo != 0 || l.hi != 2 || math.Abs(l.y(10)-200) > 1e-9 {
		t.Errorf("log axis 10^%v..10^%v, y(10) = %v", l.lo, l.hi, l.y(10))
	}
}

func TestNiceStepCompact(t *testing.T) {
	for x, want := range map[float64]float64{0.7: 1, 1: 1, 1.3: 2, 3: 5, 7: 10, 9600: 10000, 0.03: 0.05} {
		if got := niceStep(x); math.Abs(got-want) > want*1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", x, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 20000: "20k", 2500000: "2.5M", 5000: "5k", 1500: "1.5k", 999: "999", 0.5: "0.5", 0.01: "0.01", 12.5: "12.5"} {
		if got := compactNumber(v); got != want {
			t.Errorf("compactNumber(%v) = %q, want %q", v, got, want)
		}
	}
}
