package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

// fired reports whether ch holds a value, and which.
func fired(ch <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimerFiresOnlyWhenDue(t *testing.T) {
	f := NewFake(t0)
	tm := f.NewTimer(time.Second)
	after := f.After(2 * time.Second)
	if f.Waiters() != 2 {
		t.Fatalf("%d waiters, want 2", f.Waiters())
	}
	if got := f.Advance(999 * time.Millisecond); !got.Equal(t0.Add(999 * time.Millisecond)) {
		t.Fatalf("Advance returned %v", got)
	}
	if _, ok := fired(tm.C()); ok {
		t.Fatal("timer fired 1 ms early")
	}
	f.Advance(time.Millisecond)
	if v, ok := fired(tm.C()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer at its time: (%v, %v), want t0+1s", v, ok)
	}
	if _, ok := fired(after); ok {
		t.Fatal("After(2s) fired at 1 s")
	}
	if f.Waiters() != 1 {
		t.Fatalf("%d waiters after the timer fired, want 1", f.Waiters())
	}
	f.Advance(time.Hour)
	if _, ok := fired(after); !ok {
		t.Fatal("After(2s) did not fire after an hour")
	}
	if f.Waiters() != 0 || f.Since(t0) != time.Hour+time.Second || f.Until(t0) != -(time.Hour+time.Second) {
		t.Fatalf("waiters %d, since %v, until %v", f.Waiters(), f.Since(t0), f.Until(t0))
	}
	if _, ok := fired(f.After(0)); !ok {
		t.Fatal("After(0) did not fire at once")
	}
}

// Stop and Reset leave nothing stale in C, as time.Timer does since Go 1.23.
func TestFakeTimerStopAndReset(t *testing.T) {
	f := NewFake(t0)
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	f.Advance(time.Minute)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("a stopped timer fired")
	}
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a stopped timer returned true")
	}
	f.Advance(time.Second) // fired, not read
	if tm.Reset(5 * time.Second) {
		t.Fatal("Reset of a fired timer returned true")
	}
	if _, ok := fired(tm.C()); ok {
		t.Fatal("a stale tick survived Reset")
	}
	f.Advance(4 * time.Second)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("reset timer fired early")
	}
	f.Advance(time.Second)
	if v, ok := fired(tm.C()); !ok || !v.Equal(t0.Add(time.Minute+6*time.Second)) {
		t.Fatalf("reset timer: (%v, %v)", v, ok)
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer returned true")
	}
}

func TestFakeTickerDropsTicksAndStops(t *testing.T) {
	f := NewFake(t0)
	tk := f.NewTicker(time.Minute)
	f.Advance(30 * time.Second)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("ticker fired early")
	}
	f.Advance(30 * time.Second)
	if v, ok := fired(tk.C()); !ok || !v.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first tick: (%v, %v)", v, ok)
	}
	// Five periods at once, unread: one tick waits, the rest are dropped,
	// and the next one is due a period after the clock's time.
	f.Advance(5 * time.Minute)
	if v, ok := fired(tk.C()); !ok || !v.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("tick after a long advance: (%v, %v)", v, ok)
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("a ticker queued more than one tick")
	}
	f.Advance(time.Minute)
	if v, ok := fired(tk.C()); !ok || !v.Equal(t0.Add(7*time.Minute)) {
		t.Fatalf("next tick: (%v, %v)", v, ok)
	}
	tk.Reset(10 * time.Second)
	f.Advance(10 * time.Second)
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("reset ticker did not tick at its new period")
	}
	tk.Stop()
	f.Advance(time.Hour)
	if _, ok := fired(tk.C()); ok || f.Waiters() != 0 {
		t.Fatalf("a stopped ticker ticked or is still pending (%d waiters)", f.Waiters())
	}
}

// BlockUntil returns once the code under test waits on the clock, so that
// the test's Advance reaches it: no wall-clock sleep decides the order.
func TestFakeBlockUntil(t *testing.T) {
	f := NewFake(t0)
	woke := make(chan time.Time)
	for range 3 {
		go func() {
			if err := Sleep(context.Background(), f, time.Second); err != nil {
				t.Error(err)
			}
			woke <- f.Now()
		}()
	}
	f.BlockUntil(3)
	f.Advance(time.Second)
	for range 3 {
		if got := <-woke; !got.Equal(t0.Add(time.Second)) {
			t.Errorf("woke at %v", got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.BlockUntilContext(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BlockUntilContext with nobody waiting: %v, want DeadlineExceeded", err)
	}
}

// Sleep returns ctx.Err() when ctx ends first and leaves no timer behind.
func TestSleepHonoursCtx(t *testing.T) {
	f := NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Sleep(ctx, f, time.Hour) }()
	f.BlockUntil(1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep: %v, want Canceled", err)
	}
	if n := f.Waiters(); n != 0 {
		t.Fatalf("%d waiters after a cancelled Sleep, want 0", n)
	}
	if err := Sleep(context.Background(), f, 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
}

func TestReal(t *testing.T) {
	c := Real()
	if !IsReal(c) || !IsReal(OrReal(nil)) || IsReal(NewFake(t0)) || OrReal(NewFake(t0)) == c {
		t.Fatal("IsReal/OrReal do not tell the clocks apart")
	}
	start := c.Now()
	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Stop()
	<-c.After(time.Millisecond)
	if err := Sleep(context.Background(), c, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if c.Since(start) < 3*time.Millisecond || c.Until(start) > -3*time.Millisecond {
		t.Fatalf("real clock: %v since start", c.Since(start))
	}
}
