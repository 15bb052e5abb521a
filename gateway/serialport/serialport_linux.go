package serialport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// termiosBaud maps the rates of baudRates to their termios speed codes.
var termiosBaud = map[int]uint32{
	50: unix.B50, 75: unix.B75, 110: unix.B110, 134: unix.B134, 150: unix.B150, 200: unix.B200,
	300: unix.B300, 600: unix.B600, 1200: unix.B1200, 1800: unix.B1800, 2400: unix.B2400,
	4800: unix.B4800, 9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400,
	57600: unix.B57600, 115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800,
	500000: unix.B500000, 576000: unix.B576000, 921600: unix.B921600, 1000000: unix.B1000000,
	1152000: unix.B1152000, 1500000: unix.B1500000, 2000000: unix.B2000000,
	2500000: unix.B2500000, 3000000: unix.B3000000, 3500000: unix.B3500000, 4000000: unix.B4000000,
}

// openLine opens the device node non-blocking (os.OpenFile then hands a
// character device to the runtime's poller) and sets the line up: raw
// mode, the configured speed and framing, parity errors ignored (as
// tarm/serial does), VMIN 1 and VTIME 0 so that a read with no input
// fails with EAGAIN and the poller waits, rather than returning 0 bytes.
func openLine(cfg Config) (Port, error) {
	rate, ok := termiosBaud[cfg.Baud]
	if !ok { // Validate accepted it: the two tables disagree
		return nil, fmt.Errorf("serialport: %s: baud %d has no termios speed", cfg.Name, cfg.Baud)
	}
	f, err := os.OpenFile(cfg.Name, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("serialport: open %s: %w", cfg.Name, err)
	}
	cflag := unix.CREAD | unix.CLOCAL | rate
	cflag |= [...]uint32{5: unix.CS5, 6: unix.CS6, 7: unix.CS7, 8: unix.CS8}[cfg.DataBits]
	if cfg.StopBits == 2 {
		cflag |= unix.CSTOPB
	}
	switch cfg.Parity {
	case ParityEven:
		cflag |= unix.PARENB
	case ParityOdd:
		cflag |= unix.PARENB | unix.PARODD
	}
	t := unix.Termios{Iflag: unix.IGNPAR, Cflag: cflag, Ispeed: rate, Ospeed: rate}
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	p := &pollPort{f: f, name: cfg.Name}
	if p.rc, err = f.SyscallConn(); err == nil {
		err = p.control(func(fd uintptr) error { return unix.IoctlSetTermios(int(fd), unix.TCSETS, &t) })
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("serialport: set up %s: %w", cfg.Name, err)
	}
	// Made once: Flush and Read run in every transaction and must not
	// allocate.
	p.flush = func(fd uintptr) {
		var n int32
		if p.flushErr = rawIoctl(fd, unix.TIOCINQ, uintptr(unsafe.Pointer(&n))); p.flushErr == nil && n > 0 {
			p.flushErr = rawIoctl(fd, unix.TCFLSH, unix.TCIFLUSH)
		}
	}
	p.read = func(fd uintptr) bool {
		if p.req != nil {
			// WriteRead: the request goes out after rc.Read reset the
			// poller's readiness, so the reply's edge cannot be lost
			// and the first read waits for it.
			req := p.req
			p.req = nil
			for {
				p.wrote, p.werr = rawRW(unix.SYS_WRITE, fd, req)
				if p.werr != unix.EINTR {
					break
				}
			}
			if p.wrote < 0 {
				p.wrote = 0
			}
			return p.werr != nil || p.wrote < len(req)
		}
		p.n, p.err = ignoringEINTR(fd, p.buf)
		return p.err != unix.EAGAIN
	}
	return p, nil
}

func ignoringEINTR(fd uintptr, b []byte) (int, error) {
	for {
		n, err := rawRW(unix.SYS_READ, fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// rawRW is one read(2) or write(2) (trap) of b on the non-blocking fd, made
// without telling the runtime's scheduler that the goroutine enters a
// system call, as unix.Read and unix.Write do. On a non-blocking
// descriptor these calls return at once (EAGAIN when they would wait), so
// the P need not be handed off; what is saved is the scheduler's
// bookkeeping and, on a mostly idle daemon, a futex wake-up of the
// runtime's monitor thread on every call: together about a tenth of
// gatewayd's CPU on a saturated line (docs/performance.md). Only the
// transaction path uses it; a blocking call here would stall a P.
func rawRW(trap, fd uintptr, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := unix.RawSyscall(trap, fd, uintptr(p), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawIoctl is an ioctl(2) that does not wait (TIOCINQ, TCFLSH), made as
// rawRW makes its calls.
func rawIoctl(fd, req, arg uintptr) error {
	if _, _, e := unix.RawSyscall(unix.SYS_IOCTL, fd, req, arg); e != 0 {
		return e
	}
	return nil
}

// pollPort is a line whose reads and writes wait in the runtime's poller.
type pollPort struct {
	f        *os.File
	rc       syscall.RawConn
	name     string
	flush    func(fd uintptr)
	flushErr error
	// read is one read into buf for rc.Read. It always tries the read
	// before rc.Read waits: rc.Read resets the poller's readiness before
	// it calls read, so a reply that came in before that raises no edge
	// that a wait would see. For WriteRead its first call writes req
	// instead, and the reply, which can only come after that, raises an
	// edge.
	read  func(fd uintptr) bool
	buf   []byte
	n     int
	err   error
	req   []byte
	wrote int
	werr  error
	// deadline is the read deadline last set.
	deadline time.Time
}

func (p *pollPort) control(op func(fd uintptr) error) error {
	var opErr error
	if err := p.rc.Control(func(fd uintptr) { opErr = op(fd) }); err != nil {
		return err
	}
	return opErr
}

func (p *pollPort) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return p.wait(nil, b)
}

var _ WriteReader = (*pollPort)(nil)

// WriteRead writes req and waits for the reply's first bytes, as Read.
func (p *pollPort) WriteRead(req, b []byte) (int, error) {
	if len(req) == 0 || len(b) == 0 {
		if _, err := p.Write(req); err != nil {
			return 0, err
		}
		return p.Read(b)
	}
	return p.wait(req, b)
}

// wait is one rc.Read: the write of req when there is one, then a read
// into b that waits for input up to the read deadline.
func (p *pollPort) wait(req, b []byte) (int, error) {
	start := time.Now()
	// Moving the deadline moves a runtime timer: keep the one set by an
	// earlier read while it is less than an eighth of ReadTimeout stale,
	// so that the reads of a busy line (one every few milliseconds)
	// rarely touch it and a read still comes back within ReadTimeout.
	if want := start.Add(ReadTimeout); want.Sub(p.deadline) > ReadTimeout/8 {
		if err := p.f.SetReadDeadline(want); err != nil {
			return 0, fmt.Errorf("serialport: read %s: %w", p.name, err)
		}
		p.deadline = want
	}
	p.buf, p.n, p.err = b, 0, nil
	p.req, p.wrote, p.werr = req, 0, nil
	err := p.rc.Read(p.read)
	n := p.n
	if err == nil {
		err = p.err
	}
	p.buf, p.err, p.req = nil, nil, nil
	if req != nil && p.wrote < len(req) {
		werr := p.werr
		p.werr = nil
		switch {
		case err != nil: // rc.Read failed before the write (a closed port)
			return 0, fmt.Errorf("serialport: write %s: %w", p.name, err)
		case werr != nil && werr != unix.EAGAIN:
			return 0, fmt.Errorf("serialport: write %s: %w", p.name, werr)
		default: // the terminal's output queue took part of it: finish, then read
			if _, err := p.Write(req[p.wrote:]); err != nil {
				return 0, err
			}
			return p.wait(nil, b)
		}
	}
	switch {
	case n > 0:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, io.EOF
	case err == nil:
		// With VMIN 1 an empty read means the terminal was hung up.
		return hungUp(p.name, start)
	}
	return 0, fmt.Errorf("serialport: read %s: %w", p.name, err)
}

func (p *pollPort) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	if err != nil {
		err = fmt.Errorf("serialport: write %s: %w", p.name, err)
	}
	return n, err
}

// Flush discards unread input, asking the terminal first whether there
// is any (TIOCINQ): on an idle line that is the whole cost, less than the
// TCFLSH that discards. Output is not discarded: a transaction's request
// has left long before the next one flushes.
func (p *pollPort) Flush() error {
	if err := p.rc.Control(p.flush); err != nil {
		return fmt.Errorf("serialport: flush %s: %w", p.name, err)
	}
	if err := p.flushErr; err != nil {
		p.flushErr = nil
		return fmt.Errorf("serialport: flush %s: %w", p.name, err)
	}
	return nil
}

func (p *pollPort) Close() error {
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("serialport: close %s: %w", p.name, err)
	}
	return nil
}
