package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/luling-edge/luling/internal/clock"
)

// A Poller is one device that takes its line's idle time: a card reader,
// whose card reads should reach the door as soon as the line can carry
// them rather than at its next scheduled poll.
type Poller struct {
	Name string
	// Poll polls the device once (an OSDP POLL: one transaction). It
	// must come back by itself (the bus's reply timeout and the driver's
	// bounded retries see to that): Sweep sets no deadline of its own,
	// which would cost a runtime timer per poll.
	Poll func(ctx context.Context) error
	// Gap is the shortest time from the start of one of the device's polls
	// to the start of its next. It bounds the wake-ups a device costs when
	// the line could carry more (a lone reader on a fast line); zero polls
	// back to back.
	Gap time.Duration
	// Retry is the wait after a failed poll before the device's next sweep
	// poll (at least Gap): a reader that is offline or backing off gives up
	// its turns instead of failing in a loop. Its scheduled polls, which
	// bring it back, go on elsewhere.
	Retry time.Duration
}

// Sweep polls ps round-robin, back to back, until ctx ends: the next poll
// starts as soon as the previous one is done and its device's Gap has
// passed since its last poll. Polls are ordinary transactions: they wait
// their turn on the line in the arbiter's FIFO like every other caller, so
// a command or another device's scheduled poll waits for at most the one
// sweep transaction on the line. Sweep never spins: with no device due it
// sleeps until the next one is, so a device costs at most one wake-up per
// Gap while it answers and one per Retry while it does not. It times the
// sweep on the line's clock (the real clock; see the package doc) and
// returns nil when ctx ends.
func (b *Bus) Sweep(ctx context.Context, ps []Poller) error {
	if len(ps) == 0 {
		return nil
	}
	for _, p := range ps {
		if p.Poll == nil {
			return fmt.Errorf("bus %s: sweep: device %s has no poll", b.cfg.Name, p.Name)
		}
		if p.Gap < 0 || p.Retry < 0 {
			return fmt.Errorf("bus %s: sweep: device %s: gap %v, retry %v: want zero or more", b.cfg.Name, p.Name, p.Gap, p.Retry)
		}
	}
	clk := b.lineClock
	next := make([]time.Time, len(ps)) // zero: due now
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	last := len(ps) - 1
	for {
		if ctx.Err() != nil || b.closed.Load() {
			return nil
		}
		// The earliest due device, the one after the last polled first
		// among equals: round-robin when all are due.
		i := -1
		for k := 1; k <= len(ps); k++ {
			j := (last + k) % len(ps)
			if i < 0 || next[j].Before(next[i]) {
				i = j
			}
		}
		if wait := clk.Until(next[i]); wait > 0 {
			if timer == nil {
				timer = clk.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-b.done:
				return nil
			case <-timer.C():
			}
		}
		p := ps[i]
		start := clk.Now()
		err := p.Poll(ctx)
		next[i], last = start.Add(p.Gap), i
		if err != nil && ctx.Err() == nil {
			next[i] = clk.Now().Add(max(p.Retry, p.Gap))
			b.log.Debug("sweep poll failed; the device gives up its turns for a while", "device", p.Name, "retry", max(p.Retry, p.Gap), "err", err)
		}
	}
}
