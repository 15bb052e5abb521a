// Package serialport is the gateway's thin layer over serial lines.
//
// A Port is an open serial line as the bus arbiter sees it: it reads, writes,
// discards stale input and closes. Open opens real UARTs and USB adapters
// (/dev/ttyUSB0, /dev/ttyAMA0) as well as the pseudo-terminals that tests and
// simulators stand in for them with.
//
// On Linux, Open sets the line up with termios itself (raw mode, VMIN 1,
// VTIME 0) and keeps the descriptor non-blocking, so the Go runtime's
// network poller waits for input: a goroutine waiting for a reply holds no
// OS thread, and its wake-up is one epoll event instead of a thread that
// the scheduler must hand its processor away from and back to (most of the
// CPU a Modbus transaction cost when the port was a blocking read of
// github.com/tarm/serial). Elsewhere Open goes through tarm/serial.
//
// Reading has a fixed granularity: a Read that finds no input returns
// (0, io.EOF) after ReadTimeout (100 ms, the smallest step termios VTIME
// offers, kept on Linux as a read deadline, which a read moves only when
// it is more than an eighth stale: such a read may end up to 12.5 ms
// sooner), and returns as soon as any byte is there otherwise. Callers that need a longer wait read again,
// callers that need a shorter one cannot have it. When the line's
// adapter is unplugged, reads and writes fail with an error that is not
// io.EOF (EIO, or ErrHangup for a hung-up terminal whose reads come back
// empty at once) and the device node vanishes, so reopening fails until it is
// plugged in again.
//
// An Opener is the function that opens a port; the bus arbiter takes one so
// that opening can be swapped (Open is the real one).
package serialport

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// ReadTimeout is how long a Read waits for the first byte, at most, before
// it returns (0, io.EOF). It is termios VTIME's smallest step, which
// tarm/serial uses.
const ReadTimeout = 100 * time.Millisecond

// ErrHangup means the line was hung up: its adapter was unplugged (a
// pseudo-terminal's master was closed). A hung-up terminal answers reads at
// once with no data instead of waiting ReadTimeout; Read reports that as
// ErrHangup rather than as io.EOF.
var ErrHangup = errors.New("line hung up (adapter unplugged)")

// Parity is a line's parity setting.
type Parity string

// Parity settings. The empty Parity means none.
const (
	ParityNone Parity = "none"
	ParityEven Parity = "even"
	ParityOdd  Parity = "odd"
)

// Config says which line to open and how.
type Config struct {
	Name     string // device path: /dev/ttyUSB0, a pty slave, a stable symlink
	Baud     int    // bits per second, e.g. 9600
	DataBits int    // 5..8; 0 means 8
	Parity   Parity // none, even or odd; "" means none
	StopBits int    // 1 or 2; 0 means 1
}

// baudRates are the rates Linux termios (and tarm/serial) accept.
var baudRates = [...]int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800,
	9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
	1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	if c.DataBits == 0 {
		c.DataBits = 8
	}
	if c.Parity == "" {
		c.Parity = ParityNone
	}
	if c.StopBits == 0 {
		c.StopBits = 1
	}
	return c
}

// Validate reports the first setting that cannot be opened, naming the port.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Name == "" {
		return errors.New("serialport: no device path (name) given")
	}
	ok := false
	for _, r := range baudRates {
		if r == c.Baud {
			ok = true
			break
		}
	}
	if !ok {
		return fmt.Errorf("serialport: %s: baud %d is not a standard rate (expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, ...)", c.Name, c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		return fmt.Errorf("serialport: %s: data bits %d, expected 5..8", c.Name, c.DataBits)
	}
	switch c.Parity {
	case ParityNone, ParityEven, ParityOdd:
	default:
		return fmt.Errorf("serialport: %s: parity %q, expected none, even or odd", c.Name, string(c.Parity))
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		return fmt.Errorf("serialport: %s: stop bits %d, expected 1 or 2", c.Name, c.StopBits)
	}
	return nil
}

// BitsPerChar is the number of bits one character takes on the wire:
// a start bit, the data bits, the parity bit if any, and the stop bits.
func (c Config) BitsPerChar() int {
	c = c.withDefaults()
	n := 1 + c.DataBits + c.StopBits
	if c.Parity != ParityNone {
		n++
	}
	return n
}

// CharTime is how long one character takes on the wire at the line's baud
// rate (0 when the baud rate is not set).
func (c Config) CharTime() time.Duration {
	if c.Baud <= 0 {
		return 0
	}
	return time.Duration(c.BitsPerChar()) * time.Second / time.Duration(c.Baud)
}

// String renders the line settings the way installers write them:
// "9600 8N1" (without the device path).
func (c Config) String() string {
	c = c.withDefaults()
	p := "N"
	switch c.Parity {
	case ParityEven:
		p = "E"
	case ParityOdd:
		p = "O"
	}
	return fmt.Sprintf("%d %d%s%d", c.Baud, c.DataBits, p, c.StopBits)
}

// Port is an open serial line.
type Port interface {
	// Read returns the bytes that arrived, as soon as there is at least
	// one, or (0, io.EOF) after ReadTimeout without input. Any other error
	// means the line is gone.
	Read(p []byte) (int, error)
	// Write sends p. An error means the line is gone.
	Write(p []byte) (int, error)
	// Flush discards input that arrived but was not read, so stale bytes
	// cannot be taken for the next reply (through tarm/serial also output
	// not yet sent).
	Flush() error
	Close() error
}

// A WriteReader is a Port that writes a request and waits for the first
// bytes of its reply in one step (Linux: one wait in the runtime's poller,
// with no read before it that would find nothing). WriteRead returns as
// Read does, and an error wrapping the write's when the write failed; a
// request the terminal takes only in part is finished before the wait. The
// bus arbiter uses it for every transaction that expects a reply.
type WriteReader interface {
	WriteRead(req, reply []byte) (int, error)
}

// Opener opens a port.
type Opener func(Config) (Port, error)

var _ Opener = Open

// Open opens the line (see openLine for how, per operating system).
func Open(cfg Config) (Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return openLine(cfg.withDefaults())
}

// hungUp tells a read that came back empty at once, a hung-up line, from
// one that waited ReadTimeout for input: (0, io.EOF) is the latter, and
// an error naming the port otherwise.
func hungUp(name string, start time.Time) (int, error) {
	if time.Since(start) < ReadTimeout/2 {
		return 0, fmt.Errorf("serialport: read %s: %w", name, ErrHangup)
	}
	return 0, io.EOF
}
