package lane

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/payload"
)

// DefaultPulse is how long a barrier's open or close output is pulsed
// when the barrier has both.
const DefaultPulse = 500 * time.Millisecond

// Outputs is a barrier driven by GPIO outputs. With an Open output only,
// the output is held active while the barrier should be up (a
// maintained-contact controller). With Open and Close, each move pulses
// its output for Pulse (a push-button controller).
type Outputs struct {
	Open, Close *gpio.Output
	Pulse       time.Duration // default DefaultPulse
}

var _ Barrier = (*Outputs)(nil)

// Move commands the barrier.
func (o *Outputs) Move(_ context.Context, open bool) error {
	if o.Close == nil {
		return o.Open.Set(open)
	}
	pulse := o.Pulse
	if pulse <= 0 {
		pulse = DefaultPulse
	}
	on, off := o.Open, o.Close
	if !open {
		on, off = o.Close, o.Open
	}
	if err := off.Set(false); err != nil {
		return err
	}
	return on.Pulse(pulse)
}

// Coil is a barrier on a writable point of a device (a Modbus relay
// board's coil): true raises the barrier, false lowers it. Writes are
// bounded by Timeout (default 2 s).
type Coil struct {
	Device  string
	Point   string
	W       drivers.Writer
	Timeout time.Duration
	mu      sync.Mutex
}

var _ Barrier = (*Coil)(nil)

// Move writes the coil.
func (c *Coil) Move(ctx context.Context, open bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.Timeout
	if t <= 0 {
		t = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t)
	defer cancel()
	if err := c.W.Write(ctx, c.Point, payload.Bool(open)); err != nil {
		return fmt.Errorf("device %s: write %s = %t: %w", c.Device, c.Point, open, err)
	}
	return nil
}
