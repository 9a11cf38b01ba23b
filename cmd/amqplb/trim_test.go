package main

import "testing"

// The trimmer trims once a thousand more sessions are parked and the count has settled, and not
// again until another thousand are.
func TestTrimmerTrimsAfterAStormSettles(t *testing.T) {
	var tr trimmer
	steps := []struct {
		parked int
		want   bool
	}{
		{0, false},
		{600, false},  // a storm under way
		{1500, false}, // still rising
		{1505, true},  // settled: trim
		{1505, false}, // trimmed already
		{2000, false},
		{2400, false}, // 900 more than at the trim, settled: not enough
		{1000, false}, // clients left
		{1990, false}, // rising again
		{2000, true},  // 1000 more than the lowest since the trim, settled
	}
	for i, s := range steps {
		if got := tr.due(s.parked); got != s.want {
			t.Errorf("step %d (%d parked): due = %v, want %v", i, s.parked, got, s.want)
		}
	}
}
