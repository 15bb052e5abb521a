// Package osdpsim simulates OSDP Peripheral Devices (card readers with
// keypads, inputs and outputs) on a serial line, for tests, benchmarks and
// bench-testing a gateway on site.
//
// A Line is one multi-drop RS-485 line: it serves a byte stream (the master
// side of a pseudo-terminal from internal/ptypair, or any io.ReadWriter) for
// several Readers at once. Every reader sees every frame and only the
// addressed one answers (every reader answers the broadcast address).
//
// A Reader keeps the PD's side of the protocol: sequence numbers (a repeated
// sequence number and code replays the cached reply byte for byte, any
// other unexpected number gets NAK 4, sequence 0 resets the link and drops
// the secure channel), CRC-16 or checksum frames (replies mirror the
// command's check and mark byte; a ChecksumOnly reader answers CRC frames
// with NAK 1), the secure channel (SCBK-D in install mode or its own SCBK;
// a bad MAC drops the channel and gets NAK 6 in plaintext) and KEYSET.
// Tests drive the reader's world: PresentCard (Wiegand bits), Keys, SetTamper,
// SetPower, SetInput; and read what the CP did: Outputs (every OUT record
// with its timer and arrival time), LEDs, Buzzer, Text. Faults: BUSY on the
// next N commands, dropped replies (the command is executed, its reply lost
// on the line), and a silent (unplugged) reader.
//
// Timing: the line is paced like a real one at its baud rate with 8N1
// characters (10 bits): a command counts as received one wire time after its
// first byte arrived, and the reply is written when its last byte would have
// left the wire. A reader answers as soon as the command is in (no
// REPLY_DELAY of its own). The waits use internal/pace, so they are late by
// about 0.1 ms rather than by the runtime timers' up to 1 ms, which at
// 115200 baud would be more than a POLL's own wire time.
package osdpsim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/internal/pace"
	"github.com/luling-edge/luling/internal/ptypair"
)

// BitsPerChar is the character size of an OSDP line (8N1).
const BitsPerChar = 10

// Config configures a Line.
type Config struct {
	Name   string // the line's name in errors and logs
	Baud   int    // default 9600
	Logger *slog.Logger
	// OnReply, when set, is told of every reply Serve writes, just before
	// the write: the reader's address, the reply's bytes (not to be kept
	// or changed) and the time, when the reply's last byte has left the
	// simulated wire. It runs on the line's goroutine: keep it short.
	OnReply func(addr byte, reply []byte, at time.Time)
}

// Line is one simulated RS-485 line with its readers.
type Line struct {
	name string
	baud int
	log  *slog.Logger
	// onReply is Config.OnReply.
	onReply func(addr byte, reply []byte, at time.Time)

	mu      sync.Mutex
	readers map[byte]*Reader
	frames  uint64 // complete frames seen
	junk    uint64 // bytes dropped while looking for a frame
	serving sync.Mutex
}

// New makes a line without readers.
func New(cfg Config) (*Line, error) {
	if cfg.Baud == 0 {
		cfg.Baud = 9600
	}
	if cfg.Baud < 1200 || cfg.Baud > 1_000_000 {
		return nil, fmt.Errorf("osdpsim: %s: baud %d: want 1200..1000000", cfg.Name, cfg.Baud)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Line{name: cfg.Name, baud: cfg.Baud, log: cfg.Logger.With("line", cfg.Name), readers: map[byte]*Reader{}, onReply: cfg.OnReply}, nil
}

// WireTime is how long n characters take on the line.
func (l *Line) WireTime(n int) time.Duration {
	return time.Duration(int64(n) * BitsPerChar * int64(time.Second) / int64(l.baud))
}

// Baud is the line's speed.
func (l *Line) Baud() int { return l.baud }

// Stats counts frames seen and bytes dropped as garbage.
func (l *Line) Stats() (frames, junk uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.frames, l.junk
}

type chunk struct {
	b  []byte
	at time.Time
}

// Serve answers commands on rw until ctx ends or rw fails (the pty was
// closed). It returns nil when ctx ended.
func (l *Line) Serve(ctx context.Context, rw io.ReadWriter) error {
	if !l.serving.TryLock() {
		return fmt.Errorf("osdpsim: %s: already serving", l.name)
	}
	defer l.serving.Unlock()
	type deadliner interface{ SetReadDeadline(time.Time) error }
	dl, _ := rw.(deadliner)
	if dl != nil {
		_ = dl.SetReadDeadline(time.Time{})
	}
	chunks := make(chan chunk, 64)
	errc := make(chan error, 1)
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		r := ptypair.NewReader(rw)
		for {
			buf := make([]byte, 512)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	defer func() {
		close(done)
		if dl != nil {
			_ = dl.SetReadDeadline(time.Now())
			<-readerDone
		}
	}()
	var buf []byte
	var first time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("osdpsim: %s: read: %w", l.name, err)
		case c := <-chunks:
			if len(buf) == 0 {
				first = c.at
			}
			buf = append(buf, c.b...)
			for {
				n, err := osdp.FrameLen(buf)
				if err != nil {
					buf = l.resync(buf[1:])
					first = c.at
					continue
				}
				if n == 0 || len(buf) < n {
					if len(buf) > 0 && buf[0] != osdp.Mark && buf[0] != osdp.SOM {
						buf = l.resync(buf)
						first = c.at
						continue
					}
					break
				}
				raw := append([]byte(nil), buf[:n]...)
				buf = buf[n:]
				received := first.Add(l.WireTime(n))
				first = c.at
				if err := l.handle(ctx, rw, raw, received); err != nil {
					return err
				}
			}
		}
	}
}

// resync drops bytes up to the next possible frame start.
func (l *Line) resync(b []byte) []byte {
	i := 0
	for i < len(b) && b[i] != osdp.Mark && b[i] != osdp.SOM {
		i++
	}
	l.mu.Lock()
	l.junk += uint64(i)
	l.mu.Unlock()
	return b[i:]
}

func (l *Line) handle(ctx context.Context, w io.Writer, raw []byte, received time.Time) error {
	l.mu.Lock()
	l.frames++
	addr := raw[2] & 0x7F
	if raw[0] == osdp.SOM {
		addr = raw[1] & 0x7F
	}
	var targets []*Reader
	if addr == osdp.Broadcast {
		for _, r := range l.readers {
			targets = append(targets, r)
		}
		sort.Slice(targets, func(i, j int) bool { return targets[i].addr < targets[j].addr })
	} else if r := l.readers[addr]; r != nil {
		targets = append(targets, r)
	}
	l.mu.Unlock()
	if (raw[0] == osdp.SOM && raw[1]&osdp.ReplyBit != 0) || (raw[0] == osdp.Mark && raw[2]&osdp.ReplyBit != 0) {
		return nil // a reply (from another PD, or an echo): not for us
	}
	at := received
	for _, r := range targets {
		reply := r.handle(raw, at)
		if reply == nil {
			continue
		}
		at = at.Add(l.WireTime(len(reply)))
		if err := pace.Until(ctx, at); err != nil {
			return nil
		}
		if l.onReply != nil { // before the write: the CP cannot see the reply before the hook does
			l.onReply(r.Addr(), reply, time.Now())
		}
		if _, err := w.Write(reply); err != nil {
			return fmt.Errorf("osdpsim: %s: write reply of reader %d: %w", l.name, r.addr, err)
		}
	}
	return nil
}

// move re-files a reader under a new address (COMSET).
func (l *Line) move(r *Reader, from, to byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.readers[from] == r {
		delete(l.readers, from)
	}
	l.readers[to] = r
}

// Transact hands a command to the addressed reader in-process, without a
// pty and without pacing, and returns its reply: a drivers.Transactor for
// benchmarks of the CP's own processing and for unit tests. A reader that
// does not answer gives an error wrapping drivers.ErrTimeout.
func (l *Line) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n, err := osdp.FrameLen(req)
	if err != nil || n != len(req) {
		return nil, fmt.Errorf("osdpsim: %s: request of %d bytes is not one frame: %v", l.name, len(req), err)
	}
	addr := req[1]
	if req[0] == osdp.Mark {
		addr = req[2]
	}
	l.mu.Lock()
	l.frames++
	r := l.readers[addr&0x7F]
	if addr&0x7F == osdp.Broadcast {
		low := -1
		for a, c := range l.readers { // the lowest address answers
			if low < 0 || int(a) < low {
				low, r = int(a), c
			}
		}
	}
	l.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("osdpsim: %s: no reader at %d: %w", l.name, addr&0x7F, drivers.ErrTimeout)
	}
	reply := r.handle(req, time.Now())
	if reply == nil || frameLen == nil {
		if frameLen == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("osdpsim: %s: reader %d: %w", l.name, r.Addr(), drivers.ErrTimeout)
	}
	return reply, nil
}
