// Package pace waits for instants on a serial line's time scale: the
// silence before a request (a few character times, 87 µs at 230400 baud) or
// the moment a simulated reply has left the wire.
//
// The Go runtime's timers (time.Sleep, time.Timer) are only precise to a
// millisecond once the process has nothing else to do: the idle scheduler
// waits for the next timer in epoll_wait, whose timeout is in whole
// milliseconds, so a 174 µs wait takes about 1 ms and a 1.75 ms wait about
// 2 ms (golang/go#44343; runtime/netpoll_epoll.go). At 115200 baud, where
// an OSDP poll and its reply take 1.6 ms on the wire, that adds up to half a
// poll to every wait.
//
// Until sleeps the last stretch in the kernel instead (nanosleep, a
// high-resolution timer, typically 50 to 150 µs late under load), and uses a
// runtime timer, which ctx can interrupt, only for the part of a long wait
// before that. It never spins: the CPU stays free for the rest of the
// gateway.
package pace

import (
	"context"
	"time"
)

// fine is the longest tail that Until sleeps without watching ctx. A
// runtime timer for the part before it may fire up to about a millisecond
// late and still leaves the kernel sleep something to do.
const fine = 2 * time.Millisecond

// Until returns once t has passed by the monotonic clock (at once when it
// already has). It returns ctx.Err() instead when ctx has ended before the
// wait begins or ends during it, except in its last 2 ms, which are slept
// without watching ctx.
func Until(ctx context.Context, t time.Time) error {
	return until(ctx, t, nil, sleep)
}

// until is Until with a timer for the coarse part (made when nil) and the
// fine sleep given.
func until(ctx context.Context, t time.Time, tm *time.Timer, fineSleep func(time.Duration)) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d > fine {
		if tm == nil {
			tm = time.NewTimer(d - fine)
			defer tm.Stop()
		} else {
			tm.Reset(d - fine)
		}
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
		}
	}
	for d = time.Until(t); d > 0; d = time.Until(t) {
		fineSleep(d)
	}
	return nil
}

// Waiter waits like Until, for one goroutine at a time, and keeps what a
// wait needs between waits, so that a loop that waits for every
// transaction on a line neither allocates nor blocks an OS thread per
// wait. On Linux its last stretch is a timerfd that the runtime's poller
// watches: the goroutine parks, the processor runs other goroutines, and
// the wake-up comes at the timer's nanosecond precision (nanosleep, which
// Until uses, holds its thread, and the scheduler hands the thread's
// processor to another one and back for every sleep). Elsewhere, and when
// the timerfd cannot be made, it sleeps as Until does.
type Waiter struct {
	timer *time.Timer
	fine  *fineTimer
	sleep func(time.Duration) // fine.sleep, bound once
}

// NewWaiter makes a Waiter; Close releases it.
func NewWaiter() *Waiter {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	f := newFineTimer()
	return &Waiter{timer: tm, fine: f, sleep: f.sleep}
}

// Until returns once t has passed, as the package's Until does.
func (w *Waiter) Until(ctx context.Context, t time.Time) error {
	return until(ctx, t, w.timer, w.sleep)
}

// Close releases the Waiter's timer. A closed Waiter still waits, as
// Until does.
func (w *Waiter) Close() error { return w.fine.close() }
