package pace

import (
	"time"

	"golang.org/x/sys/unix"
)

// sleep blocks the calling thread in nanosleep for about d. A signal (the
// runtime's preemption signal among them) ends it early; Until sleeps
// again for what is left.
func sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	_ = unix.Nanosleep(&ts, nil)
}
