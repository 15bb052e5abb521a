// Package modbussim simulates Modbus RTU slaves on a serial line, for tests,
// benchmarks, the demo and bench-testing a gateway on site.
//
// A Server is one multi-drop RS-485 line. It serves a byte stream (the
// master side of a pseudo-terminal from internal/ptypair, or any
// io.ReadWriter) for many Units at once: every unit sees every frame, only
// the addressed unit answers, frames for other addresses are ignored
// silently, and broadcast writes (unit 0) are executed by every unit without
// a reply. A Unit holds coils, discrete inputs, holding and input registers
// and serves function codes 01–06, 15 and 16, with exception replies 01
// (illegal function), 02 (illegal data address) and 03 (illegal data value).
//
// Framing: a pty delivers bytes at once, without the silences that delimit
// RTU frames on a real line, so the server frames requests by the lengths
// their function codes imply and checks their CRC. After garbage or a CRC
// failure it drops a byte at a time until a good frame lines up again, and
// counts what it dropped.
//
// Timing: the server paces the line as a real one at the configured Line
// (baud rate and bits per character). A request counts as received at the
// arrival of its first byte plus its wire time; the unit then keeps the
// t3.5 end-of-frame silence and sends its reply, which is written when its
// last byte would have left the wire. All waits are scheduled against
// absolute times of the monotonic clock, so they do not add up error.
// Line.MinTransaction gives the physical limit that benchmarks compare
// against. A request that begins less than t3.5 after the previous frame on
// the line ended is a t3.5 violation and is counted.
//
// Faults, settable per unit at run time: offline (silent), slow (extra reply
// delay), and a wrong CRC on the next N replies; and per line, noise
// (SetNoise): every byte of every reply is hit with a given chance, its bits
// flipped at random, as interference on a long cable does.
//
// On top of the slaves, the parking models (Ultrasonic, Geomagnetic) give a
// unit the register map of a parking-bay sensor, and a Lot simulates cars
// arriving at and leaving the bays of a car park wired to several buses.
package modbussim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/internal/ptypair"
)

// Config configures a Server.
type Config struct {
	// Name names the line in errors and logs (for example a port path).
	Name string
	// Line is the simulated line's speed and character format.
	Line Line
	// StaleTimeout is how long an incomplete frame may wait for its
	// remaining bytes before it counts as garbage. Zero means 100 ms or the
	// wire time of the largest frame, whichever is longer.
	StaleTimeout time.Duration
	// Logger receives the server's diagnostics; nil discards them.
	Logger *slog.Logger
}

// Server is one simulated RS-485 line with its units.
type Server struct {
	name   string
	line   Line
	stale  time.Duration
	logger *slog.Logger

	mu    sync.RWMutex
	units map[byte]*Unit
	order []*Unit // by address, for broadcasts and counting

	serving sync.Mutex // one Serve at a time
	c       counters

	noise      atomic.Uint64 // math.Float64bits of the chance per reply byte
	noiseMu    sync.Mutex
	noiseRng   *rand.Rand
	noiseBytes atomic.Uint64
}

// NewServer makes a line with no units.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Line.Validate(); err != nil {
		return nil, err
	}
	line := cfg.Line.withDefaults()
	stale := cfg.StaleTimeout
	if stale <= 0 {
		stale = max(100*time.Millisecond, line.WireTime(maxADU)+line.T35())
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name := cfg.Name
	if name == "" {
		name = "line"
	}
	return &Server{
		name:   name,
		line:   line,
		stale:  stale,
		logger: logger.With("line", name),
		units:  map[byte]*Unit{},
	}, nil
}

// SetNoise makes every byte of every reply from now on hit by line noise
// with chance p (0 turns it off; 1 hits every byte): a hit byte is XORed
// with a random non-zero value. Noise is reproducible from seed for the
// same sequence of replies.
func (s *Server) SetNoise(p float64, seed uint64) {
	p = min(max(p, 0), 1)
	s.noiseMu.Lock()
	s.noiseRng = rand.New(rand.NewPCG(seed, 0x6e6f697365))
	s.noiseMu.Unlock()
	s.noise.Store(math.Float64bits(p))
}

// NoiseBytes returns the number of reply bytes line noise changed.
func (s *Server) NoiseBytes() uint64 { return s.noiseBytes.Load() }

// addNoise hits the bytes of b with the line's noise, in place.
func (s *Server) addNoise(b []byte) {
	p := math.Float64frombits(s.noise.Load())
	if p == 0 {
		return
	}
	s.noiseMu.Lock()
	defer s.noiseMu.Unlock()
	for i := range b {
		if s.noiseRng.Float64() < p {
			b[i] ^= byte(1 + s.noiseRng.IntN(255))
			s.noiseBytes.Add(1)
		}
	}
}

// Line returns the line's timing parameters.
func (s *Server) Line() Line { return s.line }

// AddUnit adds a unit with address id (1–247) and tables of the given sizes.
// Units can be added while the server serves.
func (s *Server) AddUnit(id byte, sz Sizes) (*Unit, error) {
	if id < 1 || id > maxUnit {
		return nil, fmt.Errorf("modbussim: %s: unit address %d: want 1..%d", s.name, id, maxUnit)
	}
	if err := sz.validate(); err != nil {
		return nil, fmt.Errorf("modbussim: %s: unit %d: %w", s.name, id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.units[id]; ok {
		return nil, fmt.Errorf("modbussim: %s: unit %d already exists", s.name, id)
	}
	u := newUnit(id, sz)
	s.units[id] = u
	s.order = append(s.order, u)
	sort.Slice(s.order, func(i, j int) bool { return s.order[i].id < s.order[j].id })
	return u, nil
}

// Unit returns the unit with address id, or nil.
func (s *Server) Unit(id byte) *Unit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.units[id]
}

// Units returns all units, by address.
func (s *Server) Units() []*Unit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Unit(nil), s.order...)
}

// Stats returns the line's counters.
func (s *Server) Stats() Stats { return s.c.snapshot() }

type chunk struct {
	data []byte
	at   time.Time
	err  error
}

// deadliner is what *os.File and net.Conn offer to interrupt a Read.
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// Serve answers requests read from rw until ctx ends (it then returns nil)
// or rw fails (it returns the error; closing a pty's master side, as an
// unplugged adapter does, ends it this way). When rw has SetReadDeadline
// (an *os.File of a pty does) Serve interrupts its read on return;
// otherwise a read already waiting ends only when rw is closed.
func (s *Server) Serve(ctx context.Context, rw io.ReadWriter) error {
	if !s.serving.TryLock() {
		return fmt.Errorf("modbussim: %s: already serving", s.name)
	}
	defer s.serving.Unlock()

	dl, _ := rw.(deadliner)
	if dl != nil {
		_ = dl.SetReadDeadline(time.Time{}) // clear what a previous Serve left
	}
	chunks := make(chan chunk, 64)
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go s.read(ptypair.NewReader(rw), chunks, done, readerDone)
	defer func() {
		close(done)
		if dl != nil {
			_ = dl.SetReadDeadline(time.Now())
			<-readerDone
		}
	}()

	p := &session{s: s, ctx: ctx, w: rw, inSync: true}
	stale := time.NewTimer(time.Hour)
	stale.Stop()
	defer stale.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-chunks:
			if c.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("modbussim: %s: read: %w", s.name, c.err)
			}
			p.push(c)
		case <-stale.C:
			p.dropStale()
		}
		if err := p.process(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		stale.Stop()
		if len(p.buf) > 0 {
			stale.Reset(time.Until(p.lastAt.Add(s.stale)))
		}
	}
}

// read copies rw into chunks, each stamped with its arrival time.
func (s *Server) read(rw io.Reader, chunks chan<- chunk, done <-chan struct{}, finished chan<- struct{}) {
	defer close(finished)
	buf := make([]byte, 512)
	empty := 0
	for {
		n, err := rw.Read(buf)
		at := time.Now()
		var c chunk
		switch {
		case n > 0:
			empty = 0
			c = chunk{data: append([]byte(nil), buf[:n]...), at: at}
		case err == nil:
			if empty++; empty < 100 {
				continue
			}
			err = io.ErrNoProgress
		}
		if n > 0 {
			select {
			case chunks <- c:
			case <-done:
				return
			}
		}
		if err != nil {
			select {
			case chunks <- chunk{err: err}:
			case <-done:
			}
			return
		}
	}
}

// session is the state of one Serve: the receive buffer, with the arrival
// time of every byte, and the line's timeline.
type session struct {
	s      *Server
	ctx    context.Context
	w      io.Writer
	buf    []byte
	at     []time.Time
	lastAt time.Time
	inSync bool
	// lineEnd is when the last frame on the line (request or reply) ended.
	lineEnd time.Time
	out     []byte
}

func (p *session) push(c chunk) {
	p.buf = append(p.buf, c.data...)
	for range c.data {
		p.at = append(p.at, c.at)
	}
	p.lastAt = c.at
}

func (p *session) consume(n int) {
	k := copy(p.buf, p.buf[n:])
	p.buf = p.buf[:k]
	copy(p.at, p.at[n:])
	p.at = p.at[:k]
}

func (p *session) drop(reason error) {
	p.s.logger.Debug("resynchronising", "byte", p.buf[0], "reason", reason)
	p.consume(1)
	p.s.c.dropped.Add(1)
	p.inSync = false
}

// dropStale discards the head of an incomplete frame whose remaining bytes
// never came.
func (p *session) dropStale() {
	if len(p.buf) > 0 && time.Since(p.lastAt) >= p.s.stale {
		p.drop(errors.New("incomplete frame went stale"))
	}
}

// process frames and answers every complete request in the buffer.
func (p *session) process() error {
	for len(p.buf) > 0 {
		n, err := requestLen(p.buf, p.inSync)
		if err != nil {
			p.drop(err)
			continue
		}
		if n == 0 || len(p.buf) < n {
			return nil
		}
		frame := p.buf[:n]
		if !modbus.CheckCRC(frame) {
			if p.inSync {
				p.s.c.crcErrors.Add(1)
				if u := p.s.Unit(frame[0]); u != nil {
					u.c.crcErrors.Add(1)
				}
			}
			p.drop(errors.New("crc mismatch"))
			continue
		}
		p.inSync = true
		if err := p.handle(frame, p.at[0]); err != nil {
			return err
		}
		p.consume(n)
	}
	return nil
}

// handle runs one good request frame that began to arrive at arrival.
func (p *session) handle(frame []byte, arrival time.Time) error {
	s := p.s
	line := s.line
	id := frame[0]
	target := s.Unit(id)

	if !p.lineEnd.IsZero() && arrival.Sub(p.lineEnd) < line.T35() {
		s.c.t35.Add(1)
		if target != nil {
			target.c.t35.Add(1)
		}
	}
	// The request cannot start on the wire before the previous frame ended.
	start := arrival
	if start.Before(p.lineEnd) {
		start = p.lineEnd
	}
	rxEnd := start.Add(line.WireTime(len(frame)))
	p.lineEnd = rxEnd

	units := s.Units()
	if id == broadcastUnit {
		s.c.requests.Add(1)
		s.c.broadcasts.Add(1)
		for _, u := range units {
			if u.Offline() {
				continue
			}
			u.c.requests.Add(1)
			u.c.broadcasts.Add(1)
			p.out, _ = u.execute(p.out[:0], frame)
		}
		return nil
	}
	for _, u := range units {
		if u != target {
			u.c.ignored.Add(1)
		}
	}
	if target == nil || target.Offline() {
		s.c.ignored.Add(1)
		return nil
	}
	s.c.requests.Add(1)
	target.c.requests.Add(1)
	reply, delay := target.execute(p.out[:0], frame)
	p.out = reply
	if reply[1]&0x80 != 0 {
		s.c.exceptions.Add(1)
	}
	replyEnd := rxEnd.Add(line.T35() + delay + line.WireTime(len(reply)))
	if err := sleepUntil(p.ctx, replyEnd); err != nil {
		return err
	}
	now := time.Now()
	if now.After(replyEnd) {
		replyEnd = now
	}
	p.lineEnd = replyEnd
	// Counted before the write, so that whoever reads the reply sees it counted.
	s.c.replies.Add(1)
	target.c.replies.Add(1)
	s.addNoise(reply)
	if _, err := p.w.Write(reply); err != nil {
		return fmt.Errorf("modbussim: %s: unit %d: write reply: %w", s.name, id, err)
	}
	return nil
}

// spinWindow is how close to a deadline sleepUntil stops trusting the
// timer and yields in a loop instead: the runtime's timers wake up to about
// a millisecond late when nothing else is going on, and a character at
// 115200 baud lasts 95 µs.
const spinWindow = time.Millisecond

// sleepUntil waits until the monotonic clock reaches t, or ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	if d := time.Until(t) - spinWindow; d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
	return ctx.Err()
}
