package ingest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The limit is QueueTime of the rate measured over the last rateWindow,
// never below the floor nor above the queue's size; it follows a rate
// that falls.
func TestPacerLimitFollowsTheRate(t *testing.T) {
	p := newPacer(5*time.Second, 4096, 0)
	if got := p.limit.Load(); got != queueFloor {
		t.Fatalf("limit before any sample %d, want the floor %d", got, queueFloor)
	}
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var done uint64
	at := t0
	step := func(d time.Duration, perSecond float64) {
		for end := at.Add(d); at.Before(end); {
			at = at.Add(paceEvery)
			done += uint64(perSecond * paceEvery.Seconds())
			p.sample(at, done)
		}
	}
	step(20*time.Second, 100) // 100 messages a second: 5 s of it is 500
	if got := p.limit.Load(); got < 490 || got > 510 {
		t.Errorf("limit at 100 messages/s %d, want about 500", got)
	}
	step(20*time.Second, 10) // starved: 50 would be 5 s; the floor holds
	if got := p.limit.Load(); got != queueFloor {
		t.Errorf("limit at 10 messages/s %d, want the floor %d", got, queueFloor)
	}
	step(20*time.Second, 10000) // fast: the queue's size caps it
	if got := p.limit.Load(); got != 4096 {
		t.Errorf("limit at 10,000 messages/s %d, want the queue's size 4096", got)
	}
	step(20*time.Second, 0) // the writer stalled (InfluxDB down)
	if got := p.limit.Load(); got != queueFloor {
		t.Errorf("limit with nothing written for 20s %d, want the floor %d", got, queueFloor)
	}
	if n := len(p.samples); n > int(rateWindow/paceEvery)+2 {
		t.Errorf("%d samples kept, want about %d (the window)", n, rateWindow/paceEvery)
	}
	if small := newPacer(time.Second, 16, 0); small.limit.Load() != 16 {
		t.Errorf("a queue of 16 gets a limit of %d, want 16", small.limit.Load())
	}
}

// The floor is at least what fills every write slot, in messages of the
// average size taken in: with writes slower than QueueTime the queue
// still fills them (the rate alone would shrink them, and itself).
func TestPacerFloorFillsTheWrites(t *testing.T) {
	p := newPacer(5*time.Second, 4096, 2*5000) // two writes of 5,000 points
	if got := p.floor(); got != queueFloor {
		t.Fatalf("floor before any message %d, want %d", got, queueFloor)
	}
	for range 10 {
		p.took(30)
	}
	if got := p.floor(); got != 334 {
		t.Errorf("floor with messages of 30 records %d, want 334 (10,000 points)", got)
	}
	// Slow writes: 334 messages every 10 s is 33 a second, 5 s of which
	// is below the floor, which holds.
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		p.sample(t0.Add(time.Duration(i)*paceEvery), uint64(i)*33/10)
	}
	if got := p.limit.Load(); got != 334 {
		t.Errorf("limit with slow writes %d, want the floor 334", got)
	}
	p.took(1_000_000) // one huge message: the average is above a write
	if got := p.floor(); got != queueFloor {
		t.Errorf("floor with huge messages %d, want %d", got, queueFloor)
	}
	tiny := newPacer(5*time.Second, 4096, 64*1_000_000)
	tiny.took(1)
	if got := tiny.floor(); got != 4096 {
		t.Errorf("floor with 64 writes of a million one-record messages %d, want the queue's size", got)
	}
}

// wait holds a delivery while the queue is at its limit, lets it go at
// the sample after room appeared, and gives up when ctx ends.
func TestPacerWaitHoldsUntilRoom(t *testing.T) {
	p := newPacer(time.Second, 4096, 0)
	var queued atomic.Int64
	queued.Store(queueFloor)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan bool, 1)
	go func() { got <- p.wait(ctx, &queued) }()
	select {
	case <-got:
		t.Fatal("wait returned with the queue at its limit")
	case <-time.After(50 * time.Millisecond):
	}
	p.sample(time.Now(), 0) // no room yet: still waiting
	select {
	case <-got:
		t.Fatal("wait returned after a sample without room")
	case <-time.After(50 * time.Millisecond):
	}
	queued.Add(-1)
	p.sample(time.Now(), 1)
	if ok := <-got; !ok {
		t.Fatal("wait reported the end of ctx, want room")
	}

	queued.Add(1) // at the limit again
	go func() { got <- p.wait(ctx, &queued) }()
	cancel()
	if ok := <-got; ok {
		t.Fatal("wait reported room after ctx ended")
	}
}
