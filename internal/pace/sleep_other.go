//go:build !linux

package pace

import "time"

// sleep is the runtime's sleep where no finer one is wired up.
func sleep(d time.Duration) { time.Sleep(d) }

// fineTimer sleeps as Until does where no timerfd is wired up.
type fineTimer struct{}

func newFineTimer() *fineTimer { return &fineTimer{} }

func (*fineTimer) sleep(d time.Duration) { sleep(d) }

func (*fineTimer) close() error { return nil }
