package gateway

import (
	"container/heap"
	"context"
	"log/slog"
	"time"

	"github.com/luling-edge/luling/internal/clock"
)

// A schedule polls a group of devices from one goroutine, each at its own
// fixed rate: the devices of one serial bus (whose transactions take turns
// on the line anyway), or one device alone (a GPIO device, a plugin).
//
// It polls the device due earliest, the one waiting longest among devices
// due at the same time, and sleeps on one timer when none is due. A device's
// next poll is one interval after its last scheduled one; a poll that came
// late (the line was busy, a device ahead of it was slow) moves the device's
// schedule on to a tenth of an interval after now instead of bursting to
// catch up, so on a saturated line the devices take turns round-robin. One
// goroutine per bus, rather than one per device, saves a goroutine hand-off
// and a timer per poll: the devices of a busy line are polled back to back.
//
// Commands, idle-time sweeps, doors and lanes reach the line through the
// bus's FIFO, as the schedule's own transactions do, so they wait for at
// most the transaction on the line, not for the schedule's turn.
type schedule struct {
	name string // the bus's name, or the device's id
	due  dueHeap
	seq  uint64 // order of the last rescheduling, for ties
}

// scheduled is one device in a schedule.
type scheduled struct {
	d     *device
	log   *slog.Logger
	phase time.Duration // first poll, after the schedule starts
	next  time.Time
	seq   uint64
}

// dueHeap orders devices by next poll, then by when they were last
// rescheduled (round-robin among devices due at once).
type dueHeap []*scheduled

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(*scheduled)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// add puts d on the schedule, first polled phase after the schedule
// starts.
func (s *schedule) add(d *device, phase time.Duration, log *slog.Logger) {
	s.seq++
	s.due = append(s.due, &scheduled{d: d, log: log.With("device", d.spec.ID), phase: phase, seq: s.seq})
}

// schedules groups the devices: one schedule per serial bus for the
// devices whose transactions the line bounds (drivers.Info.Bus: a driver
// that talks on the bus through its arbiter), one per device for the
// others. First polls are spread over one poll interval (across all
// devices, as they are listed), so that a bus does not see every device
// at once after start.
func (g *Gateway) schedules() []*schedule {
	var out []*schedule
	byBus := map[string]*schedule{}
	for i, d := range g.devices {
		phase := time.Duration(0)
		if n := len(g.devices); n > 1 {
			phase = d.poll * time.Duration(i) / time.Duration(n)
		}
		var s *schedule
		if d.lineBound {
			s = byBus[d.spec.Bus]
		}
		if s == nil {
			s = &schedule{name: d.spec.ID}
			if d.lineBound {
				s.name = d.spec.Bus
				byBus[d.spec.Bus] = s
			}
			out = append(out, s)
		}
		s.add(d, phase, g.log)
	}
	return out
}

// run polls the schedule's devices until ctx ends.
func (s *schedule) run(ctx context.Context, g *Gateway) {
	if len(s.due) == 0 {
		return
	}
	// The schedule starts from the time the first timer is armed at: read
	// the clock first, so that time passing between the two cannot shift
	// it.
	start := g.now()
	for _, e := range s.due {
		e.next = start.Add(e.phase)
	}
	heap.Init(&s.due)
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if ctx.Err() != nil {
			return
		}
		e := s.due[0]
		if wait := g.clock.Until(e.next); wait > 0 {
			// The timer is armed only here and always drained below, so
			// Reset never finds a stale expiry.
			if timer == nil {
				timer = g.clock.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-timer.C():
			}
		}
		g.pollOnce(ctx, e.d, e.log)
		// Fixed rate without catch-up bursts: a late poll moves the schedule.
		e.next = e.next.Add(e.d.poll)
		if now := g.now(); e.next.Before(now) {
			e.next = now.Add(e.d.poll / 10)
		}
		s.seq++
		e.seq = s.seq
		heap.Fix(&s.due, 0)
	}
}
