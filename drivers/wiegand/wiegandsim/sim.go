// Package wiegandsim drives virtual GPIO lines like a Wiegand reader does:
// low pulses on D0 for 0 and D1 for 1, with a pulse width and an inter-bit
// gap taken from real readers (50–160 µs, 0.9–2 ms). It also produces the
// line noise a gateway must reject: glitches, both lines low together and
// truncated frames. Tests, cmd/devsim and bench rigs use it.
package wiegandsim

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/drivers/wiegand"
)

// Timing of the generated pulses.
type Timing struct {
	Pulse time.Duration // low time of a bit (default 80 µs)
	Gap   time.Duration // from the end of one pulse to the next (default 1 ms)
}

// Generator sends frames on two virtual lines.
type Generator struct {
	D0, D1 *vpin.Pin
	Timing Timing
}

// New returns a generator on d0 and d1 with default timing.
func New(d0, d1 *vpin.Pin) *Generator {
	return &Generator{D0: d0, D1: d1, Timing: Timing{Pulse: 80 * time.Microsecond, Gap: time.Millisecond}}
}

// SendCard sends one card of format f.
func (g *Generator) SendCard(ctx context.Context, f wiegand.Format, facility, number uint32) error {
	v, n, err := wiegand.Encode(f, facility, number)
	if err != nil {
		return err
	}
	return g.SendBits(ctx, v, n)
}

// SendBits sends the n low bits of v, most significant first.
func (g *Generator) SendBits(ctx context.Context, v uint64, n int) error {
	for i := n - 1; i >= 0; i-- {
		p := g.D0
		if v>>i&1 == 1 {
			p = g.D1
		}
		p.Drive(gpio.Low)
		sleep(g.Timing.Pulse)
		p.Drive(gpio.High)
		if i > 0 {
			sleep(g.Timing.Gap)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wiegandsim: frame cut after %d of %d bits: %w", n-i, n, err)
		}
	}
	return nil
}

// SendBothLow sends a frame in which, at bit k, both lines go low
// together (a short between the lines, or crosstalk).
func (g *Generator) SendBothLow(ctx context.Context, v uint64, n, k int) error {
	if k < 0 || k >= n {
		return fmt.Errorf("wiegandsim: both-low bit %d: want 0..%d", k, n-1)
	}
	if err := g.SendBits(ctx, v>>(n-k), k); err != nil {
		return err
	}
	sleep(g.Timing.Gap)
	// D0 falls, and half a gap later D1 falls too while D0 is still low
	// (far enough apart not to look like a glitch). Both stay low until
	// the reader has taken D1's edge and a while longer, so that a reader
	// that looks at the other line when an edge comes sees it low.
	g.D0.Drive(gpio.Low)
	sleep(g.Timing.Gap / 2)
	g.D1.Drive(gpio.Low)
	for end := time.Now().Add(time.Second); g.D1.Queued() > 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Microsecond)
	}
	sleep(2 * time.Millisecond)
	g.D0.Drive(gpio.High)
	g.D1.Drive(gpio.High)
	if rest := n - k - 1; rest > 0 {
		sleep(g.Timing.Gap)
		return g.SendBits(ctx, v, rest)
	}
	return nil
}

// SendGlitch sends a frame with an extra spike on D1 right after bit k's
// pulse: two falling edges a few microseconds apart.
func (g *Generator) SendGlitch(ctx context.Context, v uint64, n, k int) error {
	if k < 0 || k >= n {
		return fmt.Errorf("wiegandsim: glitch bit %d: want 0..%d", k, n-1)
	}
	if err := g.SendBits(ctx, v>>(n-k-1), k+1); err != nil {
		return err
	}
	g.D1.Drive(gpio.Low)
	g.D1.Drive(gpio.High)
	if rest := n - k - 1; rest > 0 {
		sleep(g.Timing.Gap)
		return g.SendBits(ctx, v, rest)
	}
	return nil
}

// sleep waits at least d; short waits spin so that pulses keep their
// microsecond widths.
func sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if d >= 500*time.Microsecond {
		time.Sleep(d)
		return
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
	}
}
