// Package ptypair makes pseudo-terminal pairs that stand in for serial
// lines: a simulator holds the master side and speaks a device's bytes, and
// the gateway opens the slave path exactly as it opens /dev/ttyUSB0.
//
// A Pair can also publish its slave under a stable link path, and be
// unplugged and plugged in again (a new pty behind the same link), the way a
// USB serial adapter vanishes and comes back.
package ptypair

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Pair is a pseudo-terminal pair in raw mode.
type Pair struct {
	Master    *os.File
	slave     *os.File // kept open so the master never reads EIO while the gateway reopens
	SlavePath string
	Link      string // stable path (symlink to SlavePath), or ""
}

// Open makes a raw pty pair. With link != "", a symlink at link points to
// the slave and is what the gateway should be configured with.
func Open(link string) (*Pair, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("ptypair: open: %w", err)
	}
	if err := makeRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("ptypair: raw mode on %s: %w", s.Name(), err)
	}
	p := &Pair{Master: m, slave: s, SlavePath: s.Name()}
	if link != "" {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			p.Close()
			return nil, err
		}
		os.Remove(link)
		if err := os.Symlink(p.SlavePath, link); err != nil {
			p.Close()
			return nil, fmt.Errorf("ptypair: link %s: %w", link, err)
		}
		p.Link = link
	}
	return p, nil
}

// Path returns the path the gateway should open: the link if any.
func (p *Pair) Path() string {
	if p.Link != "" {
		return p.Link
	}
	return p.SlavePath
}

// Close closes both sides and removes the link, as if the adapter were
// unplugged: the gateway's reads and writes on the slave fail.
func (p *Pair) Close() error {
	if p.Link != "" {
		if target, err := os.Readlink(p.Link); err == nil && target == p.SlavePath {
			os.Remove(p.Link)
		}
	}
	p.slave.Close()
	return p.Master.Close()
}

// makeRaw puts the terminal into raw mode: no echo, no line editing, no
// translation of CR/LF, 8-bit characters.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
