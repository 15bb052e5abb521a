//go:build !unix

package safefile

// Lock does nothing where there is no flock: two concurrent changes on
// such a system may lose one of them (the file itself is still replaced
// atomically).
func Lock(path string) (func(), error) { return func() {}, nil }
