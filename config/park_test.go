package config

import (
	"strings"
	"testing"
	"time"
)

// frontend.park_after: 0 when not written, negative (never) and >= 100ms kept, a positive value
// below 100ms refused with its line, and ToTOML writes it back.
func TestFrontendParkAfter(t *testing.T) {
	frontend := func(line string) string {
		return strings.Replace(minimal, `backend = "rabbitmq"`, "backend = \"rabbitmq\"\n"+line, 1)
	}
	for _, tt := range []struct {
		line string
		want time.Duration
		err  string
	}{
		{line: "", want: 0},
		{line: `park_after = "-1s"`, want: -time.Second},
		{line: `park_after = "250ms"`, want: 250 * time.Millisecond},
		{line: `park_after = "10ms"`, err: `a.toml:6: frontend "amqp": park_after 10ms is below 100ms`},
	} {
		c, err := Parse("a.toml", []byte(frontend(tt.line)))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		if got := c.Frontends[0].ParkAfter; got != tt.want {
			t.Errorf("%q: park_after = %v, want %v", tt.line, got, tt.want)
		}
		back, err := Parse("b.toml", ToTOML(c))
		if err != nil {
			t.Fatalf("ToTOML output does not parse: %v", err)
		}
		if got := back.Frontends[0].ParkAfter; got != tt.want {
			t.Errorf("%q: park_after after ToTOML = %v, want %v", tt.line, got, tt.want)
		}
	}
}
