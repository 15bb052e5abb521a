package packaging

import (
	"io/fs"
	"syscall"
)

// owner returns a file's numeric owner and group.
func owner(fi fs.FileInfo) (uid, gid int) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1
	}
	return int(st.Uid), int(st.Gid)
}
