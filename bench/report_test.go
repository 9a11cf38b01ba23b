package bench

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// smallReport has three targets: direct (reference), amqplb (one failed round) and haproxy
// (unreachable).
func smallReport() *Report {
	fig := func(pub, p99 float64) Figures {
		return Figures{
			{Name: "published", Unit: "msg/s", Value: pub, Higher: true},
			{Name: "latency_p99", Unit: "ms", Value: p99},
		}
	}
	return &Report{
		Workload: "pubsub",
		Targets:  []Target{{"direct", "127.0.0.1:5673"}, {"amqplb", "127.0.0.1:5672"}, {"haproxy", "127.0.0.1:5680"}},
		Rounds: map[string][]Round{
			"direct": {{Round: 1, Figures: fig(10000, 2)}, {Round: 2, Figures: fig(12000, 1.5)}, {Round: 3, Figures: fig(11000, 1.8)}},
			"amqplb": {{Round: 1, Figures: fig(9000, 2.2)}, {Round: 2, Error: "publish: channel closed"}, {Round: 3, Figures: fig(11000, 2.4)}},
			"haproxy": {
				{Round: 1, Error: "target haproxy (127.0.0.1:5680) is unreachable: connection refused", Unreachable: true},
				{Round: 2, Error: "target haproxy (127.0.0.1:5680) is unreachable: connection refused", Unreachable: true},
				{Round: 3, Error: "target haproxy (127.0.0.1:5680) is unreachable: connection refused", Unreachable: true},
			},
		},
		Meta: map[string]string{"rounds": "3"},
	}
}

func TestStatOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{5}, Stat{N: 1, Median: 5, Min: 5, Max: 5}},
		{[]float64{3, 1, 2}, Stat{N: 3, Median: 2, Min: 1, Max: 3}},
		{[]float64{4, 1, 3, 2}, Stat{N: 4, Median: 2.5, Min: 1, Max: 4}},
		{[]float64{7, 7, 100}, Stat{N: 3, Median: 7, Min: 7, Max: 100}},
	} {
		if got := statOf(tc.in); got != tc.want {
			t.Errorf("statOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRowsMediansAndRatios(t *testing.T) {
	rows := smallReport().Rows()
	if len(rows) != 2 || rows[0].Name != "published" || rows[1].Name != "latency_p99" {
		t.Fatalf("rows = %+v", rows)
	}
	pub := rows[0].Stats
	want := []Stat{
		{N: 3, Median: 11000, Min: 10000, Max: 12000},
		{N: 2, Median: 10000, Min: 9000, Max: 11000, Ratio: 10000.0 / 11000},
		{},
	}
	if !reflect.DeepEqual(pub, want) {
		t.Errorf("published stats = %+v\nwant %+v", pub, want)
	}
	if m, ok := smallReport().Median("amqplb", "latency_p99"); !ok || m != 2.3 {
		t.Errorf("Median(amqplb, latency_p99) = %v, %v", m, ok)
	}
	if _, ok := smallReport().Median("haproxy", "published"); ok {
		t.Error("an unreachable target has a median")
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 51234.4: "51234", 123.4: "123", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123",
		0.01234: "0.0123", 0.00001: "0.0000", -2.5: "-2.50",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	if err := smallReport().Table(&b); err != nil {
		t.Fatal(err)
	}
	want := `pubsub: 3 round(s) per target, alternating direct amqplb haproxy; median (min–max), ratio of medians to direct
figure       unit   direct               amqplb              vs direct  haproxy      vs direct
published    msg/s  11000 (10000–12000)  10000 (9000–11000)  0.91x      UNREACHABLE  –
latency_p99  ms     1.80 (1.50–2.00)     2.30 (2.20–2.40)    1.28x      UNREACHABLE  –
  amqplb round 2 failed: publish: channel closed
  haproxy rounds 1,2,3 failed: target haproxy (127.0.0.1:5680) is unreachable: connection refused
`
	if got := b.String(); got != want {
		t.Errorf("Table:\n%s\nwant:\n%s", got, want)
	}
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	if err := smallReport().Markdown(&b); err != nil {
		t.Fatal(err)
	}
	want := `**pubsub: 3 round(s) per target, alternating direct amqplb haproxy; median (min–max), ratio of medians to direct**

| figure | unit | direct | amqplb | vs direct | haproxy | vs direct |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| published | msg/s | 11000 (10000–12000) | 10000 (9000–11000) | 0.91x | **UNREACHABLE** | – |
| latency\_p99 | ms | 1.80 (1.50–2.00) | 2.30 (2.20–2.40) | 1.28x | **UNREACHABLE** | – |

- amqplb round 2 failed: publish: channel closed
- haproxy rounds 1,2,3 failed: target haproxy (127.0.0.1:5680) is unreachable: connection refused
`
	if got := b.String(); got != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestTableNoFigures(t *testing.T) {
	r := &Report{Workload: "storm", Targets: []Target{{"x", "h:1"}}, Rounds: map[string][]Round{
		"x": {{Round: 1, Error: "unreachable", Unreachable: true}},
	}}
	var b strings.Builder
	if err := r.Table(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "UNREACHABLE") {
		t.Errorf("a report of only failed rounds does not say so:\n%s", b.String())
	}
}

func TestJSONRoundTrip(t *testing.T) {
	orig := smallReport()
	var buf bytes.Buffer
	if err := orig.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(orig, back) {
		t.Errorf("round trip changed the report:\n%+v\n%+v", orig, back)
	}

	// The medians are in the JSON for readers other than ReadReport.
	var raw struct {
		Targets []map[string]string        `json:"targets"`
		Medians map[string]map[string]Stat `json:"medians"`
	}
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if got := raw.Medians["amqplb"]["published"]; got.Median != 10000 || got.N != 2 || got.Ratio == 0 {
		t.Errorf("medians.amqplb.published = %+v", got)
	}
	if len(raw.Medians["haproxy"]) != 0 {
		t.Errorf("an unreachable target has medians: %+v", raw.Medians["haproxy"])
	}
	if raw.Targets[0]["name"] != "direct" || raw.Targets[0]["addr"] != "127.0.0.1:5673" {
		t.Errorf("targets = %v", raw.Targets)
	}
}
