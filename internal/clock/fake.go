package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a manual clock for tests. Its time moves only when Advance is
// called; then every timer, ticker and After channel whose time has come
// fires, in the order of their times. Its methods are safe for concurrent
// use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter // pending timers, tickers and After channels
	// changed is closed and replaced whenever a waiter is added, so that
	// BlockUntil wakes up.
	changed chan struct{}
}

var _ Clock = (*Fake)(nil)

// fakeWaiter is one pending timer, ticker or After channel.
type fakeWaiter struct {
	at     time.Time
	period time.Duration // a ticker's; 0 for a timer
	ch     chan time.Time
}

// NewFake returns a fake clock that reads start.
func NewFake(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the clock's time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since is Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// Until is t.Sub(Now()).
func (f *Fake) Until(t time.Time) time.Duration { return t.Sub(f.Now()) }

// After returns a channel that receives once the clock has advanced by d;
// at once for d <= 0.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	return f.NewTimer(d).C()
}

// NewTimer makes a timer that fires once the clock has advanced by d; at
// once for d <= 0.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, w: &fakeWaiter{ch: make(chan time.Time, 1)}}
	t.Reset(d)
	return t
}

// NewTicker makes a ticker that fires each time the clock has advanced by
// another d.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTicker{f: f, w: &fakeWaiter{ch: make(chan time.Time, 1)}}
	t.Reset(d)
	return t
}

// Advance moves the clock on by d, fires the timers that are due, and
// returns the new time. A ticker fires once per Advance at most when its
// reader has not taken the last tick (like time.Ticker, it drops ticks).
func (f *Fake) Advance(d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			keep = append(keep, w)
			continue
		}
		select {
		case w.ch <- w.at:
		default: // a ticker whose last tick was not taken
		}
		if w.period > 0 {
			for !w.at.After(f.now) {
				w.at = w.at.Add(w.period)
			}
			keep = append(keep, w)
		}
	}
	clear(f.waiters[len(keep):])
	f.waiters = keep
	return f.now
}

// Waiters returns how many timers, tickers and After channels are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntil returns once at least n timers, tickers or After channels are
// pending: the code under test has gone to sleep on the clock, and an
// Advance now reaches it.
func (f *Fake) BlockUntil(n int) {
	f.BlockUntilContext(context.Background(), n) //nolint:errcheck // cannot fail without a ctx
}

// BlockUntilContext is BlockUntil that gives up with ctx.Err() when ctx
// ends first.
func (f *Fake) BlockUntilContext(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		got, changed := len(f.waiters), f.changed
		f.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// add arms w at the clock's time plus d, or fires it at once when d <= 0
// and w is a timer. The caller holds f.mu.
func (f *Fake) add(w *fakeWaiter, d time.Duration) {
	w.at = f.now.Add(d)
	if d <= 0 && w.period == 0 {
		select {
		case w.ch <- w.at:
		default: // not reached: remove drained the channel
		}
		return
	}
	f.waiters = append(f.waiters, w)
	close(f.changed)
	f.changed = make(chan struct{})
}

// remove disarms w and drains its channel; it reports whether w was
// pending. The caller holds f.mu.
func (f *Fake) remove(w *fakeWaiter) bool {
	select {
	case <-w.ch:
	default:
	}
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			return true
		}
	}
	return false
}

type fakeTimer struct {
	f *Fake
	w *fakeWaiter
}

func (t *fakeTimer) C() <-chan time.Time { return t.w.ch }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.remove(t.w)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	was := t.f.remove(t.w)
	t.f.add(t.w, d)
	return was
}

type fakeTicker struct {
	f *Fake
	w *fakeWaiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.ch }

func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.f.remove(t.w)
}

func (t *fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.f.remove(t.w)
	t.w.period = d
	t.f.add(t.w, d)
}
