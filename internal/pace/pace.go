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
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d > fine {
		tm := time.NewTimer(d - fine)
		select {
		case <-ctx.Done():
			tm.Stop()
			return ctx.Err()
		case <-tm.C:
		}
	}
	for d = time.Until(t); d > 0; d = time.Until(t) {
		sleep(d)
	}
	return nil
}
