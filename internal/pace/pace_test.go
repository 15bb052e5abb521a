package pace_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/pace"
)

func TestUntilReturnsOnlyAfterT(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 300 * time.Microsecond, 1500 * time.Microsecond, 4 * time.Millisecond} {
		until := time.Now().Add(d)
		if err := pace.Until(context.Background(), until); err != nil {
			t.Fatalf("Until(+%v): %v", d, err)
		}
		if now := time.Now(); now.Before(until) {
			t.Errorf("Until(+%v) returned %v early", d, until.Sub(now))
		}
	}
}

func TestUntilPastTimeIgnoresEndedCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pace.Until(ctx, time.Now().Add(-time.Second)); err != nil {
		t.Errorf("Until(past) with an ended ctx: %v, want nil", err)
	}
}

func TestUntilStopsWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pace.Until(ctx, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Until(+1h) with an ended ctx: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pace.Until(ctx, time.Now().Add(time.Hour)) }()
	time.AfterFunc(10*time.Millisecond, cancel)
	if err := <-done; !errors.Is(err, context.Canceled) { // the test's timeout catches a wait that ignores ctx
		t.Errorf("Until(+1h) cancelled while waiting: %v, want context.Canceled", err)
	}
}

// BenchmarkUntil reports how late Until returns for waits of the size of
// a line turnaround, next to a runtime timer for the same wait.
func BenchmarkUntil(b *testing.B) {
	for _, d := range []time.Duration{174 * time.Microsecond, 1750 * time.Microsecond} {
		for _, how := range []string{"pace", "timer"} {
			b.Run(how+"-"+d.String(), func(b *testing.B) {
				var late time.Duration
				for b.Loop() {
					until := time.Now().Add(d)
					if how == "pace" {
						pace.Until(context.Background(), until)
					} else {
						<-time.After(d)
					}
					late += time.Since(until)
				}
				b.ReportMetric(float64(late.Microseconds())/float64(b.N), "late-µs")
			})
		}
	}
}
