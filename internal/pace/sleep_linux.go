package pace

import (
	"os"
	"syscall"
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

// fineTimer is a timerfd in the runtime's poller; a nil file sleeps in
// nanosleep.
type fineTimer struct {
	f     *os.File
	rc    syscall.RawConn
	arm   func(fd uintptr) // arms the timerfd with spec; made once
	spec  unix.ItimerSpec
	err   error
	token [8]byte
}

func newFineTimer() *fineTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return &fineTimer{}
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return &fineTimer{}
	}
	t := &fineTimer{f: f, rc: rc}
	t.arm = func(fd uintptr) { t.err = unix.TimerfdSettime(int(fd), 0, &t.spec, nil) }
	return t
}

func (t *fineTimer) sleep(d time.Duration) {
	if t.f == nil {
		sleep(d)
		return
	}
	t.spec.Value = unix.NsecToTimespec(d.Nanoseconds())
	if err := t.rc.Control(t.arm); err != nil || t.err != nil {
		sleep(d)
		return
	}
	// The read parks the goroutine until the timer expires; a failed one
	// (closed) leaves the rest of the wait to the caller's loop.
	if _, err := t.f.Read(t.token[:]); err != nil {
		sleep(d)
	}
}

func (t *fineTimer) close() error {
	if t.f == nil {
		return nil
	}
	f := t.f
	t.f = nil
	return f.Close()
}
