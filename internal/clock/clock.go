// Package clock is the gateway's one time source: every part that reads the
// time or waits for it (the serial bus's back-off and line timing, the rules
// engine, the command executor, the uplink, the plugin host and the poll
// loop) takes a Clock, so that a test can run it on a Fake.
//
// Real is the system clock (time.Now, runtime timers). Fake is a manual
// clock for tests: its time moves only when the test calls Advance, which
// fires the timers, tickers and After channels that have come due, and
// BlockUntil lets a test wait until the code under test is waiting on the
// clock, so a fake-time test needs no wall-clock sleeps.
//
// The package imports nothing else of the project.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	// Since is Now().Sub(t).
	Since(t time.Time) time.Duration
	// Until is t.Sub(Now()).
	Until(t time.Time) time.Duration
	// After returns a channel that receives the time once d has passed;
	// at once for d <= 0.
	After(d time.Duration) <-chan time.Time
	// NewTimer makes a timer that fires once d has passed.
	NewTimer(d time.Duration) Timer
	// NewTicker makes a ticker that fires every d; d must be positive.
	NewTicker(d time.Duration) Ticker
}

// Timer is a time.Timer on a Clock. As with time.Timer since Go 1.23, no
// stale time is received from C after Stop or Reset returns.
type Timer interface {
	C() <-chan time.Time
	// Stop stops the timer; it reports whether the timer was pending.
	Stop() bool
	// Reset makes the timer fire once d has passed from now; it reports
	// whether the timer was pending.
	Reset(d time.Duration) bool
}

// Ticker is a time.Ticker on a Clock: C receives once per period, and a
// tick that its reader is not ready for is dropped.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

// OrReal returns c, or the system clock when c is nil: for Options fields
// whose zero value means the real clock.
func OrReal(c Clock) Clock {
	if c == nil {
		return realClock{}
	}
	return c
}

// IsReal reports whether c is the system clock. Code that needs a finer
// wait than runtime timers give (internal/pace) uses it only on the real
// clock and waits on c otherwise.
func IsReal(c Clock) bool {
	_, ok := c.(realClock)
	return ok
}

type realClock struct{}

var _ Clock = realClock{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Since(t time.Time) time.Duration        { return time.Since(t) }
func (realClock) Until(t time.Time) time.Duration        { return time.Until(t) }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTimer(d time.Duration) Timer         { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time   { return r.t.C }
func (r realTicker) Stop()                 { r.t.Stop() }
func (r realTicker) Reset(d time.Duration) { r.t.Reset(d) }

// Sleep waits until d has passed on c, or until ctx ends, when it returns
// ctx.Err(). Unlike a select on After, it leaves no timer behind when ctx
// ends first.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
