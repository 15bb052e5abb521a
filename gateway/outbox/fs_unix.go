//go:build unix

package outbox

import "syscall"

// fsSize returns the size of the file system holding dir, or 0 when it
// cannot be told.
func fsSize(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize)
}
