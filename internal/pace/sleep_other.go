//go:build !linux

package pace

import "time"

// sleep is the runtime's sleep where no finer one is wired up.
func sleep(d time.Duration) { time.Sleep(d) }
