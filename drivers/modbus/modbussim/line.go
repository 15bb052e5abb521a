package modbussim

import (
	"fmt"
	"time"
)

// Line describes the serial line's speed and character format, from which
// every wire time of the simulator follows.
type Line struct {
	// Baud is the line speed in bits per second (default 19200).
	Baud int
	// CharBits is the number of bits one character takes on the wire:
	// start bit, 8 data bits, parity and stop bits. 11 for 8E1, 8O1 and 8N2
	// (the Modbus serial-line default, and the default here), 10 for 8N1.
	CharBits int
}

// Defaults for a zero Line: 19200 baud, 11-bit characters.
const (
	DefaultBaud     = 19200
	DefaultCharBits = 11
)

func (l Line) withDefaults() Line {
	if l.Baud == 0 {
		l.Baud = DefaultBaud
	}
	if l.CharBits == 0 {
		l.CharBits = DefaultCharBits
	}
	return l
}

// Validate reports a baud rate or character size that no serial line has.
func (l Line) Validate() error {
	l = l.withDefaults()
	if l.Baud < 300 || l.Baud > 4_000_000 {
		return fmt.Errorf("modbussim: baud %d: want 300..4000000", l.Baud)
	}
	if l.CharBits < 7 || l.CharBits > 12 {
		return fmt.Errorf("modbussim: %d bits per character: want 7..12 (10 for 8N1, 11 for 8E1/8N2)", l.CharBits)
	}
	return nil
}

// CharTime is the time one character takes on the wire.
func (l Line) CharTime() time.Duration {
	l = l.withDefaults()
	return time.Duration(int64(l.CharBits) * int64(time.Second) / int64(l.Baud))
}

// WireTime is the time n characters take on the wire, back to back.
func (l Line) WireTime(n int) time.Duration {
	l = l.withDefaults()
	return time.Duration(int64(n) * int64(l.CharBits) * int64(time.Second) / int64(l.Baud))
}

// T35 is the end-of-frame silence: 3.5 character times up to 19200 baud,
// a fixed 1750 µs above (Modbus over serial line, 2.5.1.1).
func (l Line) T35() time.Duration {
	l = l.withDefaults()
	if l.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(int64(7*l.CharBits) * int64(time.Second) / int64(2*l.Baud))
}

// MinTransaction is the physical minimum time of one transaction with a
// request of reqLen bytes and a reply of replyLen bytes: the request's wire
// time, the silence that ends it, the reply's wire time and the silence
// that ends the reply before the master may send again. 1/MinTransaction
// is the most transactions per second the line can carry.
func (l Line) MinTransaction(reqLen, replyLen int) time.Duration {
	return l.WireTime(reqLen) + l.T35() + l.WireTime(replyLen) + l.T35()
}
