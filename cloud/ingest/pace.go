package ingest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Back-pressure in time.
//
// The queue between the source and the writer holds at most
// QueueMessages messages, but what matters to a gateway's sequence check
// and to a broker's redelivery timer is how long a message waits in it,
// not how many wait with it. An instance held to a tenth of a core wrote
// about 25 messages a second and had 3,000 of them queued: two minutes of
// work. A message that came again after its partition moved waited behind
// them longer than the sequence grace, and its gap counted lost before it
// arrived. So deliver also waits while the queue holds more than
// QueueTime of the writer's measured rate (completed messages a second,
// over the last rateWindow), never more than QueueMessages and never less
// than the floor: queueFloor messages, and at least what fills every write
// slot (Writes × BatchPoints points, in messages of the average size seen).
// A writer idle since start has no rate yet; and with writes slower than
// QueueTime, a bound of QueueTime alone would shrink the writes, the rate
// with them, and the bound again, down to a trickle below what InfluxDB
// takes (the messages in writes count as queued).

// DefaultQueueTime is Config.QueueTime when unset: a small part of the
// sequence grace (60 s) and of the NATS engine's ack wait (30 s).
const DefaultQueueTime = 5 * time.Second

const (
	// paceEvery is how often the pacer samples the writer's progress and
	// lets waiting deliveries look again.
	paceEvery = 100 * time.Millisecond
	// rateWindow is how far back the rate is measured: long enough to
	// span a few InfluxDB writes, short enough to follow a change of the
	// instance's CPU.
	rateWindow = 10 * time.Second
	// queueFloor is the smallest queue allowed: a few full writes of the
	// messages a city sends (30 records each).
	queueFloor = 128
)

// pacer bounds the queue in time: limit is QueueTime of the writer's rate.
type pacer struct {
	horizon time.Duration
	slots   int64 // points all writes in flight carry at most
	ceil    int64
	// Records and messages taken in so far, for the average message.
	records, msgs atomic.Uint64
	limit         atomic.Int64
	rate          atomic.Uint64 // messages a second ×1000, for the metrics

	mu      sync.Mutex
	next    chan struct{} // closed at the next sample
	samples []paceSample  // oldest first, within rateWindow
}

type paceSample struct {
	at   time.Time
	done uint64
}

func newPacer(horizon time.Duration, ceil, slots int) *pacer {
	p := &pacer{horizon: horizon, slots: int64(slots), ceil: int64(ceil), next: make(chan struct{})}
	p.limit.Store(p.floor())
	return p
}

// took counts a message of n records taken in.
func (p *pacer) took(n int) {
	p.records.Add(uint64(n))
	p.msgs.Add(1)
}

// floor is the smallest limit: queueFloor, or the messages of the
// average size seen that fill every write slot; at most the ceiling.
func (p *pacer) floor() int64 {
	f := float64(queueFloor)
	if m, r := p.msgs.Load(), p.records.Load(); m > 0 && r > 0 {
		f = max(f, math.Ceil(float64(p.slots)*float64(m)/float64(r)))
	}
	return int64(min(f, float64(p.ceil)))
}

// sample records that done messages were completed so far and updates the
// limit; it wakes the deliveries waiting for room.
func (p *pacer) sample(now time.Time, done uint64) {
	p.mu.Lock()
	p.samples = append(p.samples, paceSample{now, done})
	i := 0
	for i < len(p.samples)-2 && now.Sub(p.samples[i+1].at) >= rateWindow {
		i++
	}
	p.samples = p.samples[i:]
	first := p.samples[0]
	limit := p.floor()
	if d := now.Sub(first.at); d > 0 && done > first.done {
		rate := float64(done-first.done) / d.Seconds()
		p.rate.Store(uint64(rate * 1000))
		limit = max(limit, int64(rate*p.horizon.Seconds()))
	} else {
		p.rate.Store(0)
	}
	p.limit.Store(min(limit, p.ceil))
	p.wakeLocked()
	p.mu.Unlock()
}

// wakeLocked wakes every delivery waiting for room; p.mu is held.
func (p *pacer) wakeLocked() {
	close(p.next)
	p.next = make(chan struct{})
}

// run samples the completed messages every paceEvery until ctx ends.
func (p *pacer) run(ctx context.Context, done func() uint64) {
	t := time.NewTicker(paceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.wakeLocked() // nobody waits past the end
			p.mu.Unlock()
			return
		case now := <-t.C:
			p.sample(now, done())
		}
	}
}

// wait returns once queued is below the limit, or false when ctx ended
// first.
func (p *pacer) wait(ctx context.Context, queued *atomic.Int64) bool {
	for queued.Load() >= p.limit.Load() {
		p.mu.Lock()
		next := p.next
		p.mu.Unlock()
		select {
		case <-next:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
