// Package fakeclock is a manual clock for tests of code that takes a clock
// (Now and After): time moves only when the test calls Advance, and a
// channel from After fires once Advance has passed its time.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a manual clock. Its methods are safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	// Added receives (without blocking, up to its buffer) each time After
	// is called, so a test can wait until the code under test sleeps.
	Added chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock that reads start.
func New(start time.Time) *Clock { return &Clock{now: start, Added: make(chan struct{}, 64)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives once the clock has advanced by d;
// at once for d <= 0.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	select {
	case c.Added <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves the clock on by d, fires the waiters that are due, and
// returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	return c.now
}

// Waiters returns how many After channels have not fired yet.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
