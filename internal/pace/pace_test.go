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
		for _, how := range []string{"pace", "waiter", "timer"} {
			b.Run(how+"-"+d.String(), func(b *testing.B) {
				var late time.Duration
				w := pace.NewWaiter()
				defer w.Close()
				for b.Loop() {
					until := time.Now().Add(d)
					switch how {
					case "pace":
						pace.Until(context.Background(), until)
					case "waiter":
						w.Until(context.Background(), until)
					default:
						<-time.After(d)
					}
					late += time.Since(until)
				}
				b.ReportMetric(float64(late.Microseconds())/float64(b.N), "late-µs")
			})
		}
	}
}

func TestWaiterReturnsOnlyAfterTAndReusesItself(t *testing.T) {
	w := pace.NewWaiter()
	defer w.Close()
	// Twice each, so that a second wait on the same timer is covered.
	for _, d := range []time.Duration{-time.Millisecond, 0, 50 * time.Microsecond, 300 * time.Microsecond, 1750 * time.Microsecond, 4 * time.Millisecond,
		50 * time.Microsecond, 1750 * time.Microsecond, 4 * time.Millisecond} {
		until := time.Now().Add(d)
		if err := w.Until(context.Background(), until); err != nil {
			t.Fatalf("Until(+%v): %v", d, err)
		}
		if now := time.Now(); now.Before(until) {
			t.Errorf("Until(+%v) returned %v early", d, until.Sub(now))
		}
	}
}

func TestWaiterStopsWhenCtxEnds(t *testing.T) {
	w := pace.NewWaiter()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if err := w.Until(ctx, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Until(+1h) cancelled while waiting: %v, want context.Canceled", err)
	}
	// The timer stopped by the cancelled wait serves the next one.
	until := time.Now().Add(3 * time.Millisecond)
	if err := w.Until(context.Background(), until); err != nil || time.Now().Before(until) {
		t.Errorf("Until after a cancelled wait: %v, or returned early", err)
	}
}

func TestClosedWaiterStillWaits(t *testing.T) {
	w := pace.NewWaiter()
	w.Close()
	until := time.Now().Add(500 * time.Microsecond)
	if err := w.Until(context.Background(), until); err != nil || time.Now().Before(until) {
		t.Errorf("closed Waiter: %v, or returned early", err)
	}
}

func TestWaiterDoesNotAllocate(t *testing.T) {
	w := pace.NewWaiter()
	defer w.Close()
	ctx := context.Background()
	if n := testing.AllocsPerRun(20, func() { w.Until(ctx, time.Now().Add(200*time.Microsecond)) }); n != 0 {
		t.Errorf("Waiter.Until allocates %v times per wait, want 0", n)
	}
}

// Waits so short that the timer may expire before the goroutine parks must
// not lose the expiry (a lost one parks the goroutine for ever).
func TestWaiterShortWaitsNeverHang(t *testing.T) {
	w := pace.NewWaiter()
	defer w.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			w.Until(context.Background(), time.Now().Add(time.Duration(i%20)*time.Microsecond))
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // 2000 waits of at most 20 µs; a minute means one never returned
		t.Fatal("a short wait never returned")
	}
}
