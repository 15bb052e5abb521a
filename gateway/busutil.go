package gateway

import (
	"sync"
	"time"
)

// utilWindow is the shortest interval a bus's utilization is measured over.
const utilWindow = 10 * time.Second

// utilMeter turns a bus's running total of busy time into the fraction of
// wall time the line carried transactions over the last 10 to 20 seconds:
// it keeps the busy total at the start of the interval and moves that
// start on once the interval is a window old.
type utilMeter struct {
	mu         sync.Mutex
	at, prevAt time.Time
	busy, prev time.Duration
}

// observe takes the busy total at now and returns the utilization, 0..1.
func (m *utilMeter) observe(now time.Time, busy time.Duration) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() {
		// First look: measure from now on.
		m.at, m.busy, m.prevAt, m.prev = now, busy, now, busy
		return 0
	}
	if now.Sub(m.at) >= utilWindow {
		m.prevAt, m.prev = m.at, m.busy
		m.at, m.busy = now, busy
	}
	wall := now.Sub(m.prevAt)
	if wall <= 0 {
		return 0
	}
	u := float64(busy-m.prev) / float64(wall)
	return min(max(u, 0), 1)
}
