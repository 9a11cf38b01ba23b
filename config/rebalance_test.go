package config

import (
	"strings"
	"testing"
	"time"
)

const rebalanceBase = `
[[frontend]]
name = "amqp"
bind = ":5672"
backend = "rabbitmq"

[[backend]]
name = "rabbitmq"

[backend.health_check]
`

// [backend.rebalance]: absent means nil (and is not written back), written keys keep their
// value and the others get the defaults, bad values are refused with their line, and enabling
// it without the management API is an error.
func TestRebalance(t *testing.T) {
	const server = "\n[[backend.server]]\nname = \"rmq1\"\naddress = \"10.0.0.1:5672\"\n"
	const mgmt = "management = { port = 15672 }\n"
	for _, tt := range []struct {
		name, check, table string
		want               *Rebalance
		err                string
	}{
		{name: "absent", want: nil},
		{name: "defaults", check: mgmt, table: "enabled = true\n",
			want: &Rebalance{Enabled: true, Tolerance: 0.10, Rate: "2/s", MinAge: time.Minute}},
		{name: "written", check: mgmt, table: "enabled = true\ntolerance = 0\nrate = \"30/m\"\nmin_age = \"2s\"\n",
			want: &Rebalance{Enabled: true, Tolerance: 0, Rate: "30/m", MinAge: 2 * time.Second}},
		{name: "integer tolerance", table: "tolerance = 1\n",
			want: &Rebalance{Tolerance: 1, Rate: "2/s", MinAge: time.Minute}},
		{name: "disabled needs no management", table: "enabled = false\n",
			want: &Rebalance{Tolerance: 0.10, Rate: "2/s", MinAge: time.Minute}},
		{name: "no management: amqplb closes the sessions itself", table: "enabled = true\n",
			want: &Rebalance{Enabled: true, Tolerance: 0.10, Rate: "2/s", MinAge: time.Minute}},
		{name: "negative tolerance", check: mgmt, table: "tolerance = -0.5\n",
			err: "a.toml:14: backend \"rabbitmq\": rebalance: tolerance -0.5 must be a number of at least 0"},
		{name: "bad rate", check: mgmt, table: "rate = \"fast\"\n",
			err: "a.toml:14: backend \"rabbitmq\": rebalance: rate: invalid rate \"fast\""},
		{name: "zero rate", check: mgmt, table: "rate = \"0/s\"\n", err: "the count must be a number above 0"},
		{name: "bad unit", check: mgmt, table: "rate = \"2/d\"\n", err: "the unit must be s, m or h"},
		{name: "negative min_age", check: mgmt, table: "min_age = \"-1s\"\n", err: "a.toml:14: backend \"rabbitmq\": rebalance: min_age"},
		{name: "tolerance string", check: mgmt, table: "tolerance = \"10%\"\n", err: "a.toml:14: backend \"rabbitmq\": rebalance: tolerance: expected a number"},
		{name: "unknown key", check: mgmt, table: "ratio = 1\n", err: "unknown key backend.rebalance.ratio"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := rebalanceBase + tt.check
			if tt.check == "" {
				src += "type = \"amqp\"\n"
			}
			if tt.table != "" || tt.err != "" {
				src += "\n[backend.rebalance]\n" + tt.table
			}
			src += server
			c, err := Parse("a.toml", []byte(src))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q\n%s", err, tt.err, src)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.Backends[0].Rebalance
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("rebalance = %+v, want %+v", got, tt.want)
			}
			out := ToTOML(c)
			if tt.want == nil && strings.Contains(string(out), "rebalance") {
				t.Errorf("ToTOML writes a rebalance table that was not there:\n%s", out)
			}
			back, err := Parse("b.toml", out)
			if err != nil {
				t.Fatalf("ToTOML output does not parse: %v\n%s", err, out)
			}
			if b := back.Backends[0].Rebalance; (b == nil) != (got == nil) || (b != nil && *b != *got) {
				t.Errorf("round trip gives %+v, want %+v\n%s", b, got, out)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"2/s": 2, "5/sec": 5, "30/m": 0.5, "120/min": 2, "3600/h": 1, " 0.5 / s ": 0.5} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2", "/s", "x/s", "-1/s", "0/s", "2/d", "NaN/s", "Inf/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
	if d := DefaultRebalance(); d.Enabled || d.Tolerance != DefaultRebalanceTolerance || d.Rate != DefaultRebalanceRate || d.MinAge != DefaultRebalanceMinAge {
		t.Errorf("DefaultRebalance() = %+v", d)
	}
}
