package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The direct channel (see device.proto): polls, and the bus transactions
// made during them, as length-prefixed Frames on a Unix socket between the
// host and the plugin, without gRPC's per-call streams and hand-offs.

// DirectSocketName is the socket's file name inside the directory the host
// offers in ConfigureRequest.direct_dir.
const DirectSocketName = "direct.sock"

// MaxDirectFrame caps one Frame of the direct channel, in bytes. A poll reply of
// 64 records of 64 fields is about 200 KiB.
const MaxDirectFrame = 4 << 20

// ErrDirectFrame means the other side sent something that is not a Frame of the
// direct channel, or a Frame out of turn.
var ErrDirectFrame = errors.New("direct channel: bad frame")

// keepBuf is the largest buffer a FrameConn keeps between frames.
const keepBuf = 64 << 10

// FrameConn reads and writes Frames on one connection. Reads and writes
// may run concurrently with each other, but not with themselves.
type FrameConn struct {
	c    net.Conn
	r    *bufio.Reader
	wbuf []byte
	rbuf []byte
	hdr  [4]byte
	in   Interner // for the strings of records read
}

// NewFrameConn wraps c.
func NewFrameConn(c net.Conn) *FrameConn {
	return &FrameConn{c: c, r: bufio.NewReaderSize(c, 4096)}
}

// Conn returns the underlying connection (for deadlines and Close).
func (f *FrameConn) Conn() net.Conn { return f.c }

// Close closes the connection.
func (f *FrameConn) Close() error { return f.c.Close() }

// Write sends fr as one length-prefixed message, in one write.
func (f *FrameConn) Write(fr *Frame) error {
	b, err := AppendFrame(append(f.wbuf[:0], 0, 0, 0, 0), fr)
	if err != nil {
		return err
	}
	n := len(b) - 4
	if n > MaxDirectFrame {
		return fmt.Errorf("direct channel: a frame of %d bytes is larger than %d: %w", n, MaxDirectFrame, ErrDirectFrame)
	}
	binary.LittleEndian.PutUint32(b, uint32(n))
	_, err = f.c.Write(b)
	if cap(b) <= keepBuf {
		f.wbuf = b[:0]
	}
	return err
}

// Read reads the next message into fr. A clean end of the connection
// before a message is io.EOF; a message cut short, too long or not a Frame
// is an error that wraps ErrDirectFrame.
func (f *FrameConn) Read(fr *Frame) error {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("direct channel: connection ended inside a length prefix: %w", ErrDirectFrame)
		}
		return err
	}
	n := binary.LittleEndian.Uint32(f.hdr[:])
	if n > MaxDirectFrame {
		return fmt.Errorf("direct channel: length prefix %d is larger than %d: %w", n, MaxDirectFrame, ErrDirectFrame)
	}
	if uint32(cap(f.rbuf)) < n {
		f.rbuf = make([]byte, n)
	}
	body := f.rbuf[:n]
	if _, err := io.ReadFull(f.r, body); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("direct channel: connection ended inside a frame of %d bytes: %w", n, ErrDirectFrame)
		}
		return err
	}
	if cap(f.rbuf) > keepBuf {
		f.rbuf = nil
	}
	return DecodeFrame(body, fr, &f.in)
}

// ctxCheck is how often ReadBy looks at its context while it waits for a
// frame to begin.
const ctxCheck = 50 * time.Millisecond

// ReadBy reads the next frame, giving up at deadline (zero: none) or within
// ctxCheck of ctx ending. It watches ctx by waking up while no frame has
// begun, not with a goroutine or a callback per call: a frame normally
// begins within microseconds, and ctx ends early only when its owner shuts
// down. Once a frame has begun, only the deadline cuts it.
func (f *FrameConn) ReadBy(ctx context.Context, deadline time.Time, fr *Frame) error {
	// ctx.Done is not asked for: on a context that nobody asked yet, that
	// allocates its channel, once per call.
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := deadline
		if t := time.Now().Add(ctxCheck); wait.IsZero() || t.Before(wait) {
			wait = t
		}
		if err := f.c.SetReadDeadline(wait); err != nil {
			return err
		}
		_, err := f.r.Peek(1)
		if err == nil {
			break
		}
		if !IsTimeout(err) || wait.Equal(deadline) {
			return err
		}
	}
	if err := f.c.SetReadDeadline(deadline); err != nil {
		return err
	}
	return f.Read(fr)
}

// SetDeadline sets the read and write deadline (zero: none).
func (f *FrameConn) SetDeadline(t time.Time) error { return f.c.SetDeadline(t) }

// IsTimeout reports whether err is a deadline passing on the connection.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
