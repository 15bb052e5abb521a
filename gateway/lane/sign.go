package lane

import (
	"context"
	"log/slog"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Sign keeps an entrance sign showing a lot's free count: the
// guidance-display plugin's `free` point or a Modbus sign's writable
// field. It writes the latest count only: changes that come while a write
// runs are folded into the next one, and a failed write is retried every
// RetryEvery until the sign takes it.
type Sign struct {
	Device, Point string
	W             drivers.Writer
	RetryEvery    time.Duration // default 5 s
	Clock         clock.Clock   // of the retries; the real clock when nil
	Logger        *slog.Logger

	latest chan LotState
}

// Watch makes s follow lot; call it before Run.
func (s *Sign) Watch(lot *Lot) {
	s.latest = make(chan LotState, 1)
	lot.Watch(func(st LotState) {
		for {
			select {
			case s.latest <- st:
				return
			default:
			}
			select {
			case <-s.latest: // drop the older count
			default:
			}
		}
	})
}

// Run writes the counts until ctx ends.
func (s *Sign) Run(ctx context.Context) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sign", s.Device)
	retry := s.RetryEvery
	if retry <= 0 {
		retry = 5 * time.Second
	}
	clk := clock.OrReal(s.Clock)
	var pending *LotState
	failing := false
	for {
		var wait <-chan time.Time
		if pending != nil {
			wait = clk.After(retry)
		}
		select {
		case <-ctx.Done():
			return
		case st := <-s.latest:
			pending = &st
		case <-wait:
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.W.Write(wctx, s.Point, payload.Int(int64(pending.Free)))
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			log.Warn("entrance sign not updated; retrying", "point", s.Point, "free", pending.Free, "err", err)
		case err == nil:
			if failing {
				log.Info("entrance sign updated again", "free", pending.Free)
			}
			failing = false
			pending = nil
		}
	}
}
