package ptypair

import (
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollReader reads an *os.File through the runtime's poller even when the
// file was switched to blocking mode (calling Fd does that, and the pty
// package calls it on the master side): it reads only what FIONREAD says is
// there and otherwise waits for readiness, so SetReadDeadline and Close
// interrupt a waiting read.
type pollReader struct {
	f  *os.File
	rc syscall.RawConn
}

// NewReader returns a reader for r that deadlines interrupt, or r.
func NewReader(r io.Reader) io.Reader {
	f, ok := r.(*os.File)
	if !ok {
		return r
	}
	if f.SetReadDeadline(time.Time{}) != nil {
		return r // not pollable: plain blocking reads
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return r
	}
	return &pollReader{f: f, rc: rc}
}

func (p *pollReader) Read(buf []byte) (int, error) {
	var n int
	var rerr error
	err := p.rc.Read(func(fd uintptr) bool {
		avail, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
		if err != nil {
			// Not a terminal: fall back to a plain read.
			n, rerr = unix.Read(int(fd), buf)
			return true
		}
		if avail == 0 {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, _ := unix.Poll(pfd, 0); k > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				// Hung up: let the read report it (EIO or end of file).
				n, rerr = unix.Read(int(fd), buf)
				if n == 0 && rerr == nil {
					rerr = io.EOF
				}
				return true
			}
			return false
		}
		n, rerr = unix.Read(int(fd), buf[:min(avail, len(buf))])
		return true
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	return n, rerr
}
