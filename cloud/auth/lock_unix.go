package auth

import "github.com/luling-edge/luling/internal/safefile"

// lockFile takes an exclusive advisory lock on path (created if missing)
// and returns its release. Two `cloudd token` commands at once then
// apply their changes one after the other instead of one losing the
// other's.
func lockFile(path string) (func(), error) { return safefile.Lock(path) }
