// Package wiegand reads Wiegand card readers and keypads wired to two GPIO
// lines, D0 and D1, and decodes their frames.
//
// Concepts:
//
//   - Signalling: both lines idle high (pulled up). The reader sends a 0 as
//     a low pulse on D0 and a 1 as a low pulse on D1, 50–160 µs long, about
//     1–2 ms apart, first bit first. The gateway watches falling edges only.
//   - Frame: the bits of one card read or key press. A frame ends when no
//     edge came for FrameGap (25 ms by default; readers leave 25–100 ms
//     between frames).
//   - Formats: 26-bit H10301 (even parity, facility 8, card 16, odd parity),
//     34-bit (facility 16, card 16), 37-bit H10304 (facility 16, card 19),
//     4-bit and 8-bit keypad keys. Decode checks parity; a Card's ID is
//     "facility:number".
//   - Noise: a frame with a bit count no format has, a parity failure,
//     edges closer together than MinGap (a glitch or a too-short pulse), or
//     a falling edge while the other line is already low (both lines low
//     together) is rejected and counted in Stats, never decoded into a
//     card. Parity does not catch every corrupted frame; the other checks
//     exist for that reason.
//   - Timing: periph's lines drop the kernel's edge timestamps, so the
//     Reader stamps an edge with its own clock when WaitForEdge returns,
//     unless the pin tells when its last edge happened (an EdgeTimer, as
//     the project's virtual pins do). Edges are put in time order before
//     the bits are read.
//
// A Reader waits with finite timeouts only, so the gpioioctl (0 = forever)
// and gpio.PinIn (-1 = forever) conventions never matter.
package wiegand

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// EdgeTimer is implemented by pins that know when the edge WaitForEdge
// last returned happened.
type EdgeTimer interface {
	LastEdge() time.Time
}

// Defaults.
const (
	DefaultFrameGap = 25 * time.Millisecond
	DefaultMinGap   = 200 * time.Microsecond
	// MaxBits bounds a frame; longer runs of edges are noise.
	MaxBits = 64
)

// Config configures a Reader.
type Config struct {
	// Name names the reader in errors and logs ("lobby-in").
	Name string
	// D0 and D1 are the data lines.
	D0, D1 gpio.PinIn
	// FrameGap is the silence that ends a frame (default 25 ms, 1 ms..1 s).
	FrameGap time.Duration
	// MinGap is the least time between two falling edges of a frame;
	// closer edges are a glitch (default 200 µs; negative turns the
	// check off).
	MinGap time.Duration
	// Now stamps edges of pins that are not EdgeTimers (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Stats counts frames.
type Stats struct {
	Frames    uint64 // frames seen
	Cards     uint64 // frames decoded into a card
	Keys      uint64 // frames decoded into a key
	BadLength uint64 // rejected: unsupported bit count
	BadParity uint64 // rejected: parity or complement wrong
	Glitch    uint64 // rejected: edges closer than MinGap
	BothLow   uint64 // rejected: both lines low together
}

// Noise is the number of rejected frames.
func (s Stats) Noise() uint64 { return s.BadLength + s.BadParity + s.Glitch + s.BothLow }

// Reader assembles and decodes frames from two lines.
type Reader struct {
	cfg   Config
	log   *slog.Logger
	stats struct {
		frames, cards, keys, badLength, badParity, glitch, bothLow atomic.Uint64
	}
}

// New checks cfg and returns a Reader; it does no I/O.
func New(cfg Config) (*Reader, error) {
	if cfg.Name == "" {
		return nil, errors.New("wiegand: reader without a name")
	}
	if cfg.D0 == nil || cfg.D1 == nil {
		return nil, fmt.Errorf("wiegand: %s: want both D0 and D1 lines", cfg.Name)
	}
	if cfg.FrameGap == 0 {
		cfg.FrameGap = DefaultFrameGap
	}
	if cfg.FrameGap < time.Millisecond || cfg.FrameGap > time.Second {
		return nil, fmt.Errorf("wiegand: %s: frame gap %v: want 1ms..1s", cfg.Name, cfg.FrameGap)
	}
	if cfg.MinGap == 0 {
		cfg.MinGap = DefaultMinGap
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reader{cfg: cfg, log: cfg.Logger.With("reader", cfg.Name)}, nil
}

// Stats returns the frame counters.
func (r *Reader) Stats() Stats {
	s := &r.stats
	return Stats{s.frames.Load(), s.cards.Load(), s.keys.Load(), s.badLength.Load(), s.badParity.Load(), s.glitch.Load(), s.bothLow.Load()}
}

type edge struct {
	bit     uint64
	at      time.Time
	bothLow bool
}

// Run configures both lines as pulled-up inputs on falling edges and hands
// every decoded frame to handle, with the time its last bit arrived, until
// ctx ends. handle runs on the Reader's goroutine; it should return
// quickly. Run returns ctx's error, or the error configuring a line.
func (r *Reader) Run(ctx context.Context, handle func(c Card, at time.Time)) error {
	for i, p := range []gpio.PinIn{r.cfg.D0, r.cfg.D1} {
		if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
			return fmt.Errorf("wiegand: %s: set up D%d (%s): %w", r.cfg.Name, i, p, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	edges := make(chan edge, 2*MaxBits)
	var wg sync.WaitGroup
	wg.Add(2)
	go r.watch(ctx, &wg, r.cfg.D0, r.cfg.D1, 0, edges)
	go r.watch(ctx, &wg, r.cfg.D1, r.cfg.D0, 1, edges)
	defer func() {
		cancel()
		_ = r.cfg.D0.Halt()
		_ = r.cfg.D1.Halt()
		wg.Wait()
	}()

	var frame []edge
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-edges:
			// Beyond MaxBits the frame is noise anyway; keep memory bounded
			// while a disturbed line keeps producing edges.
			if len(frame) <= MaxBits {
				frame = append(frame, e)
			}
			idle.Reset(r.cfg.FrameGap)
		case <-idle.C:
			if len(frame) > 0 {
				if c, at, err := r.finish(frame); err == nil {
					handle(c, at)
				}
				frame = frame[:0]
			}
		}
	}
}

// watch waits for falling edges on one line.
func (r *Reader) watch(ctx context.Context, wg *sync.WaitGroup, p, other gpio.PinIn, bit uint64, out chan<- edge) {
	defer wg.Done()
	timer, _ := p.(EdgeTimer)
	for ctx.Err() == nil {
		if !p.WaitForEdge(100 * time.Millisecond) {
			continue
		}
		e := edge{bit: bit, bothLow: other.Read() == gpio.Low}
		if timer != nil {
			e.at = timer.LastEdge()
		} else {
			e.at = r.cfg.Now()
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return
		}
	}
}

// finish checks and decodes one frame.
func (r *Reader) finish(frame []edge) (Card, time.Time, error) {
	// Counted last, after the frame's verdict: whoever sees Frames grow
	// (Stats loads it first) also sees how the frame was judged.
	defer r.stats.frames.Add(1)
	sort.SliceStable(frame, func(i, j int) bool { return frame[i].at.Before(frame[j].at) })
	at := frame[len(frame)-1].at
	var v uint64
	for i, e := range frame {
		if e.bothLow {
			r.stats.bothLow.Add(1)
			return r.reject(fmt.Errorf("wiegand: %s: bit %d of %d: both lines low together: line noise", r.cfg.Name, i, len(frame)))
		}
		if i > 0 && r.cfg.MinGap > 0 {
			if gap := e.at.Sub(frame[i-1].at); gap < r.cfg.MinGap {
				r.stats.glitch.Add(1)
				return r.reject(fmt.Errorf("wiegand: %s: bit %d of %d came %v after the previous: want at least %v: line noise", r.cfg.Name, i, len(frame), gap, r.cfg.MinGap))
			}
		}
		v = v<<1 | e.bit
	}
	if len(frame) > MaxBits {
		r.stats.badLength.Add(1)
		return r.reject(fmt.Errorf("wiegand: %s: %d bits: want 4, 8, 26, 34 or 37: %w", r.cfg.Name, len(frame), ErrLength))
	}
	c, err := Decode(v, len(frame))
	if err != nil {
		if errors.Is(err, ErrParity) {
			r.stats.badParity.Add(1)
		} else {
			r.stats.badLength.Add(1)
		}
		return r.reject(fmt.Errorf("%s: %w", r.cfg.Name, err))
	}
	if c.IsKey() {
		r.stats.keys.Add(1)
	} else {
		r.stats.cards.Add(1)
	}
	return c, at, nil
}

func (r *Reader) reject(err error) (Card, time.Time, error) {
	r.log.Debug("frame rejected", "err", err)
	return Card{}, time.Time{}, err
}
