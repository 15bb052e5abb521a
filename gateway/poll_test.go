package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// stampDevice records the clock's time at each poll.
type stampDevice struct {
	clk   clock.Clock
	polls chan time.Time
}

func (s *stampDevice) Poll(context.Context) ([]payload.Record, error) {
	s.polls <- s.clk.Now()
	return nil, nil
}

// The poll loop keeps a fixed rate on the gateway's clock, starting at its
// phase; a poll that comes late moves the schedule on instead of bursting
// to catch up.
func TestPollLoopKeepsItsRateWithoutCatchUp(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	g := &Gateway{log: quietLogger(), clock: clk, now: clk.Now}
	dev := &stampDevice{clk: clk, polls: make(chan time.Time, 16)}
	const poll, phase = time.Second, 300 * time.Millisecond
	d := &device{spec: drivers.Spec{ID: "bay-1"}, drv: dev, poll: poll, state: "starting"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); g.pollLoop(ctx, d, phase) }()

	next := func(want time.Time) {
		t.Helper()
		select {
		case got := <-dev.polls:
			if !got.Equal(want) {
				t.Fatalf("poll at %v, want %v", got.Sub(t0), want.Sub(t0))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no poll at %v", want.Sub(t0))
		}
	}
	clk.BlockUntil(1)
	clk.Advance(phase - time.Nanosecond)
	if len(dev.polls) != 0 || clk.Waiters() != 1 {
		t.Fatal("polled before its phase")
	}
	clk.Advance(time.Nanosecond)
	next(t0.Add(phase))
	for i := 1; i <= 3; i++ {
		clk.BlockUntil(1)
		clk.Advance(poll)
		next(t0.Add(phase + time.Duration(i)*poll))
	}
	// The gateway stalls for three intervals: one late poll, then the next
	// a tenth of an interval later, not three at once.
	clk.BlockUntil(1)
	late := clk.Advance(3*poll + poll/2)
	next(late)
	clk.BlockUntil(1)
	clk.Advance(poll/10 - time.Nanosecond)
	if len(dev.polls) != 0 || clk.Waiters() != 1 {
		t.Fatal("polled again at once after a late poll")
	}
	clk.Advance(time.Nanosecond)
	next(late.Add(poll / 10))
	clk.BlockUntil(1)
	clk.Advance(poll)
	next(late.Add(poll/10 + poll))
	cancel()
	<-done
	if d.polls.Load() != 7 {
		t.Errorf("%d polls counted, want 7", d.polls.Load())
	}
}
