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
	f  *os.File
	rc syscall.RawConn
	// wait is the callback of rc.Read, made once: its first call arms the
	// timerfd with spec and lets rc.Read wait for the expiry, its next
	// one ends the wait. Arming inside rc.Read matters: rc.Read resets
	// the poller's readiness before its first call, which would lose an
	// expiry that came before.
	wait  func(fd uintptr) bool
	armed bool // wait armed the timer and has not read it yet
	spec  unix.ItimerSpec
	err   error
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
	t.wait = func(fd uintptr) bool {
		if !t.armed {
			t.err = unix.TimerfdSettime(int(fd), 0, &t.spec, nil)
			t.armed = t.err == nil
			return t.err != nil // armed: wait for the expiry's edge
		}
		// Called again: the poller saw the expiry. Its count is left
		// unread, a system call saved per wait: arming resets it (the
		// descriptor stops being readable), and each expiry raises a
		// new edge whether or not the last was read. A wake-up that
		// came early makes Until wait again.
		t.armed = false
		return true
	}
	return t
}

func (t *fineTimer) sleep(d time.Duration) {
	if t.f == nil {
		sleep(d)
		return
	}
	t.spec.Value = unix.NsecToTimespec(d.Nanoseconds())
	// The goroutine parks until the timer expires (the poller wakes it).
	t.armed = false
	if err := t.rc.Read(t.wait); err != nil || t.err != nil {
		t.armed = false
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
