//go:build !unix

package auth

// lockFile does nothing where there is no flock: concurrent `cloudd token`
// commands on such a system may lose one of two changes (the file itself is
// still replaced atomically).
func lockFile(path string) (func(), error) { return func() {}, nil }
