// Package bus is the serial bus arbiter: the one owner of a serial port and
// the only way devices on it reach the line.
//
// A multi-drop RS-485 line carries one conversation at a time. Every device on
// the line gets a Handle (a drivers.Transactor) from Bus.Device; a
// transaction writes one request and reads one reply. The Bus runs
// transactions one after another in the order callers asked (FIFO; a caller
// whose ctx ends leaves the queue), and around each one it:
//
//   - keeps the line's silence (its turnaround): a request is written only
//     after the silence has passed since the last byte on the line, the end
//     of the last reply or of the last request's time on the wire. The
//     silence belongs to the protocol on the line: by default it is the
//     Modbus RTU inter-frame silence t3.5 (3.5 character times up to 19200
//     baud, a fixed 1750 µs above); Config.Turnaround sets another one, such
//     as OSDP's two character times;
//   - discards stale input (late replies, noise) before writing;
//   - reads the reply by its length, which the caller's drivers.FrameLenFunc
//     tells from the bytes received so far, and returns as soon as the frame
//     is complete. A port that can (serialport.WriteReader: Linux) writes
//     the request and waits for the reply in one step, without a read that
//     finds nothing before the wait;
//   - bounds the wait by the bus's Timeout plus the request's wire time, or
//     the ctx deadline when that is earlier. Reads come back at least every
//     serialport.ReadTimeout (100 ms) even when the line is silent, and the
//     deadline is checked between reads, so a timeout is reported up to
//     about 100 ms after the deadline passed.
//
// Port state: Run opens the port and reopens it when it vanishes (an I/O
// error, a hung-up line, an open that fails because the node is gone),
// waiting with exponential back-off from 100 ms up to ReopenMax between
// attempts. While the port is down, Transact fails at once with an error
// wrapping drivers.ErrBusDown. State changes are logged once each.
//
// Device back-off: a device that missed the bus's timeout is skipped for a
// while, so that a dead or slow device does not spend the line's time that
// the others need. Its transactions fail at once with an error wrapping both
// ErrBackoff and drivers.ErrTimeout until the back-off expires (BackoffMin
// after the first timeout, doubling with every further one up to
// BackoffMax); then one probe transaction goes through, and one success
// clears the back-off. A timeout caused by the caller's own shorter ctx
// deadline is counted but starts no back-off.
//
// Idle time: Sweep polls the line's card readers round-robin, back to back,
// each at most once per its Gap, so they take the line's time that nothing
// else asks for: each sweep poll is an ordinary transaction that waits its
// turn in the FIFO, so other callers wait for at most one of them. It
// sleeps when no reader is due (sweep.go).
//
// Ready: the channel Ready returns is closed once Run has opened the port
// for the first time, so callers wait for it instead of polling Stats.
//
// Time: device back-off, last-success times and the reopen waits run on the
// clock.Clock in Options, which tests replace with a clock.Fake. The line's
// own timing (silence, reply deadlines) stays on the real clock whatever
// Options say, because the bytes on the line take real time: a fake clock
// cannot make a reply arrive sooner. On the real clock the silence is waited
// out with a pace.Waiter, whose sleeps are precise to about 0.1 ms where the
// runtime's timers round up to whole milliseconds, and which parks the
// goroutine rather than an OS thread; this package's tests run
// the line on a fake clock too, and then the silence is a wait on it.
//
// Counters are atomics and cheap; Stats returns a snapshot for the status page
// and health readings.
package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/internal/pace"
)

// Errors that callers branch on (besides drivers.ErrTimeout and
// drivers.ErrBusDown).
var (
	// ErrBackoff means the device is skipped after missing replies. Errors
	// wrapping it also wrap drivers.ErrTimeout.
	ErrBackoff = errors.New("device is backing off after missed replies")
	// ErrClosed means the bus was closed. Errors wrapping it also wrap
	// drivers.ErrBusDown.
	ErrClosed = errors.New("bus is closed")
)

// Defaults for zero Config fields.
const (
	DefaultTimeout    = 200 * time.Millisecond
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 30 * time.Second
	DefaultReopenMax  = 10 * time.Second
	reopenMin         = 100 * time.Millisecond
	fixedSilence      = 1750 * time.Microsecond
)

// Config is one bus.
type Config struct {
	Name string // the bus's name in config, logs and errors, e.g. "rs485-1"
	Port serialport.Config
	// Timeout is how long a device has to answer after its request is on
	// the wire. Default 200 ms.
	Timeout time.Duration
	// BackoffMin is a device's first back-off after a missed reply.
	// Default 1 s.
	BackoffMin time.Duration
	// BackoffMax caps a device's back-off. Default 30 s.
	BackoffMax time.Duration
	// ReopenMax caps the wait between attempts to reopen a vanished port.
	// Default 10 s.
	ReopenMax time.Duration
	// BitsPerChar overrides the bits per character that the line settings
	// give (1 start + data + parity + stop), for timing only. Some Modbus
	// installations count 11 bits per character whatever the framing.
	BitsPerChar int
	// Turnaround is the silence kept on the line before each request,
	// when the protocol on the line needs another one than Modbus RTU
	// (OSDP: two character times). Zero means the Modbus RTU t3.5 that
	// Silence gives for the line.
	Turnaround time.Duration
}

// Options are a bus's collaborators; all are optional.
type Options struct {
	Logger *slog.Logger      // default slog.Default()
	Clock  clock.Clock       // back-off and reopen waits; default the real clock
	Open   serialport.Opener // default serialport.Open
}

// Silence returns the Modbus RTU inter-frame silence t3.5 for a line:
// 3.5 character times up to 19200 baud, 1750 µs above.
func Silence(baud, bitsPerChar int) time.Duration {
	if baud > 19200 {
		return fixedSilence
	}
	if baud <= 0 {
		return 0
	}
	return time.Duration(bitsPerChar) * 7 * time.Second / time.Duration(2*baud)
}

// Bus owns one serial port and arbitrates its line.
type Bus struct {
	cfg      Config
	log      *slog.Logger
	clock    clock.Clock
	open     serialport.Opener
	charTime time.Duration
	silence  time.Duration
	// lineClock times the line: the real clock, which only this package's
	// tests replace (see the package doc).
	lineClock clock.Clock

	// line is the turn on the wire; whoever holds it owns lineState.
	line lineLock
	lineState

	mu      sync.Mutex // guards port, state, devices, down
	port    serialport.Port
	state   string // StateOpen, StateDown, StateClosed
	devices map[string]*Handle
	down    chan struct{} // signalled when a transaction finds the port gone

	closed  atomic.Bool
	running atomic.Bool
	resync  atomic.Bool // a driver found the last reply bad: flush next time
	done    chan struct{}
	ready   chan struct{} // closed when the port opened the first time
	once    sync.Once

	stats busCounters
}

// lineState is what the line's owner keeps between transactions.
type lineState struct {
	quietFrom time.Time // no request before this (end of last traffic + silence)
	buf       []byte    // reply buffer, reused
	// quiet waits out the silence on the real clock; made on first use,
	// released by Close.
	quiet *pace.Waiter
	// cleanPort and cleanEnd: the port on which the last transaction
	// read a complete reply, and when it ended; nil after anything else.
	// The next transaction on that port skips the flush when it starts
	// within the bus's timeout of cleanEnd (see needFlush).
	cleanPort serialport.Port
	cleanEnd  time.Time
}

type busCounters struct {
	transactions, timeouts, errors, reopens atomic.Uint64
	bytesSent, bytesReceived, emptyReads    atomic.Uint64
	flushes                                 atomic.Uint64
	busyNanos                               atomic.Int64
}

// Bus port states, as Stats reports them.
const (
	StateOpen   = "open"
	StateDown   = "down"
	StateClosed = "closed"
)

// New checks cfg and makes a bus. It does no I/O: Run opens the port.
func New(cfg Config, opts Options) (*Bus, error) {
	if cfg.Name == "" {
		return nil, errors.New("bus: no name given")
	}
	if err := cfg.Port.Validate(); err != nil {
		return nil, fmt.Errorf("bus %s: %w", cfg.Name, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", cfg.Timeout}, {"backoff_min", cfg.BackoffMin}, {"backoff_max", cfg.BackoffMax}, {"reopen_max", cfg.ReopenMax}, {"turnaround", cfg.Turnaround}} {
		if d.v < 0 {
			return nil, fmt.Errorf("bus %s: %s %v is negative", cfg.Name, d.name, d.v)
		}
	}
	if cfg.BitsPerChar != 0 && (cfg.BitsPerChar < 7 || cfg.BitsPerChar > 12) {
		return nil, fmt.Errorf("bus %s: bits per char %d, expected 7..12", cfg.Name, cfg.BitsPerChar)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return nil, fmt.Errorf("bus %s: backoff_max %v is below backoff_min %v", cfg.Name, cfg.BackoffMax, cfg.BackoffMin)
	}
	if cfg.ReopenMax == 0 {
		cfg.ReopenMax = DefaultReopenMax
	}
	bits := cfg.BitsPerChar
	if bits == 0 {
		bits = cfg.Port.BitsPerChar()
	}
	silence := cfg.Turnaround
	if silence == 0 {
		silence = Silence(cfg.Port.Baud, bits)
	}
	b := &Bus{
		cfg:       cfg,
		log:       opts.Logger,
		clock:     clock.OrReal(opts.Clock),
		open:      opts.Open,
		charTime:  time.Duration(bits) * time.Second / time.Duration(cfg.Port.Baud),
		silence:   silence,
		lineClock: clock.Real(),
		state:     StateDown,
		devices:   map[string]*Handle{},
		down:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("bus", cfg.Name, "port", cfg.Port.Name)
	if b.open == nil {
		b.open = serialport.Open
	}
	b.buf = make([]byte, 0, 256)
	return b, nil
}

// Name is the bus's name.
func (b *Bus) Name() string { return b.cfg.Name }

// Silence is the silence the bus keeps before each request: its Turnaround,
// or the Modbus RTU t3.5 for its line.
func (b *Bus) Silence() time.Duration { return b.silence }

// WireTime is how long n characters take on the bus's line.
func (b *Bus) WireTime(n int) time.Duration { return time.Duration(n) * b.charTime }

// Ready returns a channel that is closed once Run has opened the port for
// the first time. It stays closed when the port goes down later (Stats and
// ErrBusDown tell that), and is never closed when the port never opens:
// wait on it together with a ctx or a time limit.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Run opens the port and keeps it open, reopening it when it vanishes, until
// ctx ends or Close is called. It then closes the bus and returns nil.
func (b *Bus) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return fmt.Errorf("bus %s: Run called twice", b.cfg.Name)
	}
	defer b.Close()
	wait := time.Duration(0)
	opened := false // the port was open at least once
	var downSince time.Time
	logged := false // the current outage was logged
	for {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-b.done:
				return nil
			case <-b.clock.After(wait):
			}
		}
		if ctx.Err() != nil || b.closed.Load() {
			return nil
		}
		p, err := b.open(b.cfg.Port)
		if err != nil {
			if !logged {
				b.log.Warn("bus port cannot be opened; retrying with back-off", "err", err)
				logged = true
			}
			if downSince.IsZero() {
				downSince = b.clock.Now()
			}
			wait = nextWait(wait, reopenMin, b.cfg.ReopenMax)
			continue
		}
		b.mu.Lock()
		if b.closed.Load() {
			b.mu.Unlock()
			p.Close()
			return nil
		}
		b.port = p
		b.state = StateOpen
		select { // a stale signal from the previous port
		case <-b.down:
		default:
		}
		b.mu.Unlock()
		if opened {
			b.stats.reopens.Add(1)
			b.log.Info("bus port reopened", "down_for", b.clock.Now().Sub(downSince).Round(time.Millisecond))
		} else {
			b.log.Info("bus port open", "line", b.cfg.Port.String(), "turnaround", b.silence)
			close(b.ready)
		}
		opened, logged, wait = true, false, 0
		select {
		case <-ctx.Done():
			return nil
		case <-b.done:
			return nil
		case <-b.down:
			// portGone logged the loss; a failing reopen adds nothing.
			downSince, logged = b.clock.Now(), true
			// The first reopen attempt is immediate: a glitch may
			// already be over.
		}
	}
}

func nextWait(cur, lo, hi time.Duration) time.Duration {
	if cur < lo {
		return lo
	}
	cur *= 2
	if cur > hi {
		cur = hi
	}
	return cur
}

// Close closes the port and ends Run. Transactions in flight finish within
// about serialport.ReadTimeout; later ones fail with ErrClosed.
func (b *Bus) Close() error {
	var err error
	b.once.Do(func() {
		b.closed.Store(true)
		close(b.done)
		b.line.acquire(context.Background()) //nolint:errcheck // cannot fail without a ctx
		b.mu.Lock()
		if b.port != nil {
			err = b.port.Close()
			b.port = nil
		}
		b.state = StateClosed
		b.mu.Unlock()
		if b.quiet != nil {
			b.quiet.Close()
		}
		b.line.release()
		b.log.Info("bus closed")
	})
	return err
}

// Device returns the handle of the named device, making it on first use.
// Handles are shared: the same name gives the same handle.
func (b *Bus) Device(name string) *Handle {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.devices[name]
	if h == nil {
		h = &Handle{bus: b, name: name}
		b.devices[name] = h
	}
	return h
}

// portGone marks the port down after an I/O error and wakes Run.
func (b *Bus) portGone(p serialport.Port, err error) {
	b.mu.Lock()
	if b.port != p {
		b.mu.Unlock()
		return
	}
	b.port = nil
	if b.state == StateOpen {
		b.state = StateDown
	}
	b.mu.Unlock()
	p.Close()
	b.log.Warn("bus port lost; reopening", "err", err)
	select {
	case b.down <- struct{}{}:
	default:
	}
}

// currentPort returns the open port or an error wrapping ErrBusDown.
func (b *Bus) currentPort() (serialport.Port, error) {
	if b.closed.Load() {
		return nil, fmt.Errorf("%w: %w", ErrClosed, drivers.ErrBusDown)
	}
	b.mu.Lock()
	p := b.port
	b.mu.Unlock()
	if p == nil {
		return nil, drivers.ErrBusDown
	}
	return p, nil
}

// errIO marks an error of the port itself (the line is gone).
type errIO struct{ err error }

func (e errIO) Error() string { return e.err.Error() }
func (e errIO) Unwrap() error { return e.err }

// deadlineKind tells what bounded a transaction that timed out.
type deadlineKind int

const (
	byBus deadlineKind = iota // the bus's timeout: the device missed it
	byCtx                     // the caller's ctx deadline came first
)

type errTimedOut struct {
	kind deadlineKind
	got  int // bytes received before the deadline
}

func (e errTimedOut) Error() string {
	if e.got > 0 {
		return fmt.Sprintf("%v (%d bytes of an incomplete reply)", drivers.ErrTimeout, e.got)
	}
	return drivers.ErrTimeout.Error()
}
func (e errTimedOut) Unwrap() []error {
	if e.kind == byCtx {
		return []error{drivers.ErrTimeout, context.DeadlineExceeded}
	}
	return []error{drivers.ErrTimeout}
}

// transact runs one transaction on the line. The caller holds the line.
func (b *Bus) transact(ctx context.Context, p serialport.Port, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	if err := b.waitQuiet(ctx); err != nil {
		return nil, err
	}
	start := b.lineClock.Now()
	flush := b.needFlush(p, start)
	b.cleanPort = nil
	if flush {
		b.stats.flushes.Add(1)
		if err := p.Flush(); err != nil {
			return nil, errIO{err}
		}
	}
	wire := b.WireTime(len(req))
	if wr, ok := p.(serialport.WriteReader); ok && frameLen != nil {
		// The write and the wait for the reply in one step.
		reply, err := b.readReply(ctx, p, wr, req, start.Add(wire+b.cfg.Timeout), frameLen)
		b.lineDone(p, start, b.lineClock.Now(), err == nil)
		return reply, err
	}
	n, err := p.Write(req)
	b.stats.bytesSent.Add(uint64(n))
	if err == nil && n < len(req) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(req))
	}
	if err != nil {
		b.lineDone(p, start, b.lineClock.Now(), false)
		return nil, errIO{err}
	}
	if frameLen == nil {
		// A broadcast: nobody answers; the line is busy until the
		// request is off the wire.
		b.lineDone(p, start, start.Add(wire), false)
		return nil, nil
	}
	reply, err := b.readReply(ctx, p, nil, nil, start.Add(wire+b.cfg.Timeout), frameLen)
	b.lineDone(p, start, b.lineClock.Now(), err == nil)
	return reply, err
}

// lineDone records the end of a transaction's time on the line: the
// silence runs from end, and a complete reply (complete) lets the next
// transaction on p skip the flush (needFlush).
func (b *Bus) lineDone(p serialport.Port, start, end time.Time, complete bool) {
	b.quietFrom = end.Add(b.silence)
	b.stats.busyNanos.Add(int64(end.Sub(start)))
	if complete {
		b.cleanPort, b.cleanEnd = p, end
	}
}

// needFlush tells whether stale input must be discarded before a request
// at now. Input is stale when it is not the reply to the request about to
// go: a late reply after a missed deadline, the rest of a frame that
// failed, bytes after a broadcast, or noise picked up while the line was
// idle. Right after a transaction that read its complete reply, within
// the bus's timeout, none of these is likely, and skipping the flush saves
// a system call on every transaction of a busy line (the check alone is a
// tenth of the CPU of a saturated Modbus line). Noise that comes in that
// gap anyway is what the drivers' frame finders skip before a reply
// (modbus.SyncReplyLen, osdp.FrameLen), as for noise that comes after a
// flush; a reply that then fails its driver's check makes the next
// transaction flush (Handle.Resync).
func (b *Bus) needFlush(p serialport.Port, now time.Time) bool {
	if b.resync.Load() && b.resync.Swap(false) {
		return true
	}
	return b.cleanPort != p || now.Sub(b.cleanEnd) > b.cfg.Timeout
}

// waitQuiet waits until the line has been silent for the bus's silence.
func (b *Bus) waitQuiet(ctx context.Context) error {
	wait := b.lineClock.Until(b.quietFrom)
	if wait <= 0 {
		return nil
	}
	var err error
	if clock.IsReal(b.lineClock) {
		if b.quiet == nil {
			b.quiet = pace.NewWaiter()
		}
		err = b.quiet.Until(ctx, b.quietFrom)
	} else {
		err = clock.Sleep(ctx, b.lineClock, wait)
	}
	if err != nil {
		return ctxErr(ctx, 0)
	}
	return nil
}

func ctxErr(ctx context.Context, got int) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errTimedOut{kind: byCtx, got: got}
	}
	return ctx.Err()
}

// readReply reads until frameLen says the frame is complete or the deadline
// passes. With wr, it writes req first, in the same step as the first read.
func (b *Bus) readReply(ctx context.Context, p serialport.Port, wr serialport.WriteReader, req []byte, deadline time.Time, frameLen drivers.FrameLenFunc) ([]byte, error) {
	buf := b.buf[:0]
	want := 0
	for {
		if want == 0 || len(buf) < want {
			need := 64
			if want > 0 {
				need = want - len(buf)
			}
			if cap(buf)-len(buf) < need {
				nb := make([]byte, len(buf), len(buf)+need+64)
				copy(nb, buf)
				buf = nb
			}
			var n int
			var err error
			if wr != nil {
				n, err = wr.WriteRead(req, buf[len(buf):len(buf)+need])
				if err != nil && !isEOF(err) {
					b.buf = buf[:0]
					return nil, errIO{err}
				}
				b.stats.bytesSent.Add(uint64(len(req)))
				wr = nil
			} else {
				n, err = p.Read(buf[len(buf) : len(buf)+need])
			}
			switch {
			case n > 0:
				buf = buf[:len(buf)+n]
				b.stats.bytesReceived.Add(uint64(n))
			case err == nil:
			case isEOF(err):
				b.stats.emptyReads.Add(1)
			default:
				b.buf = buf[:0]
				return nil, errIO{err}
			}
			if n > 0 && want == 0 {
				total, ferr := frameLen(buf)
				if ferr != nil {
					b.buf = buf[:0]
					return nil, fmt.Errorf("reply % x: %w", buf, ferr)
				}
				if total < 0 {
					b.buf = buf[:0]
					return nil, fmt.Errorf("reply % x: frame length %d is negative", buf, total)
				}
				if total > 0 {
					if total > 1<<16 {
						b.buf = buf[:0]
						return nil, fmt.Errorf("reply % x: frame length %d is implausible", buf, total)
					}
					want = total
					// The rest of a frame that has begun gets its
					// time on the wire even past the bus timeout.
					if end := b.lineClock.Now().Add(b.WireTime(want-len(buf)) + b.silence); end.After(deadline) {
						deadline = end
					}
				}
			}
		}
		if want > 0 && len(buf) >= want {
			out := make([]byte, want)
			copy(out, buf)
			if cap(buf) <= 1024 {
				b.buf = buf[:0]
			}
			return out, nil
		}
		if ctx.Err() != nil {
			b.buf = buf[:0]
			return nil, ctxErr(ctx, len(buf))
		}
		if b.closed.Load() {
			b.buf = buf[:0]
			return nil, fmt.Errorf("%w: %w", ErrClosed, drivers.ErrBusDown)
		}
		if !b.lineClock.Now().Before(deadline) {
			b.buf = buf[:0]
			return nil, errTimedOut{kind: byBus, got: len(buf)}
		}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
