package gateway

import (
	"testing"
	"time"
)

func TestUtilMeter(t *testing.T) {
	var m utilMeter
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Duration
		busy time.Duration
		want float64
	}{
		{0, 5 * time.Second, 0},                          // first look: nothing measured yet
		{4 * time.Second, 6 * time.Second, 0.25},         // 1 s busy in 4 s
		{10 * time.Second, 10 * time.Second, 0.5},        // 5 s in 10 s; the window moves on
		{15 * time.Second, 10 * time.Second, 5.0 / 15.0}, // 5 s in the 15 s since t0
		{20 * time.Second, 20 * time.Second, 1},          // the window moved on at 20 s: 10 s busy from 10 s to 20 s
	}
	for _, s := range steps {
		if got := m.observe(t0.Add(s.at), s.busy); got < s.want-1e-9 || got > s.want+1e-9 {
			t.Errorf("at %v busy %v: utilization %v, want %v", s.at, s.busy, got, s.want)
		}
	}
	if got := m.observe(t0.Add(21*time.Second), 30*time.Second); got != 1 {
		t.Errorf("more busy than wall time (clock skew): %v, want it capped at 1", got)
	}
}
