// Package gpio gives the gateway its GPIO inputs and outputs: door
// contacts, exit buttons, loop detectors and tamper switches in; door
// strikes, sirens and barrier relays out.
//
// Concepts:
//
//   - Pins are periph.io pins. Open finds one by "chip:line"
//     ("gpiochip0:17", the GPIO character device through gpioioctl) or by
//     name ("GPIO17", periph's gpioreg). On a machine without that GPIO it
//     fails with an error naming the pin; tests use virtual pins (vpin),
//     and bench tests lines of a simulator process (simgpio, selected by
//     the config's gpio.simulator).
//   - Active level: wiring decides whether "on" is a high or a low level
//     (an NC contact to ground, a relay board that switches on low).
//     ActiveLow inverts a pin, and Input and Output speak of active and
//     inactive only.
//   - Input debounce: after an edge an Input waits until the line stayed
//     quiet for Debounce, then reads it; only a changed, settled level is
//     reported. A bouncing contact gives one change, not many.
//   - Output pulse: Pulse turns an Output on now and off after a duration
//     without blocking; a new pulse while one runs extends it. Close turns
//     it off, so a strike is never left energized.
//   - Driver "gpio": one pin as a gateway device (options pin, direction,
//     active_low). An input reports `gpio` records with field active; an
//     output accepts writes to the point "active" (relay.pulse uses it).
package gpio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3/gpioioctl"
)

// ErrNoPin means the named pin does not exist on this machine.
var ErrNoPin = errors.New("no such GPIO pin")

// Open finds a pin by "chip:line" (gpiochip0:17) or by name (GPIO17).
func Open(name string) (gpio.PinIO, error) {
	if name == "" {
		return nil, errors.New("gpio: empty pin name: want chip:line (gpiochip0:17) or a line name (GPIO17)")
	}
	if _, err := driverreg.Init(); err != nil {
		return nil, fmt.Errorf("gpio: pin %q: initialize GPIO drivers: %w", name, err)
	}
	if chipName, lineStr, ok := strings.Cut(name, ":"); ok {
		line, err := strconv.Atoi(lineStr)
		if err != nil || line < 0 {
			return nil, fmt.Errorf("gpio: pin %q: line %q: want a number", name, lineStr)
		}
		var names []string
		for _, c := range gpioioctl.Chips {
			names = append(names, c.Name())
			if c.Name() == chipName || c.Path() == chipName {
				if l := c.ByNumber(line); l != nil {
					return l, nil
				}
				return nil, fmt.Errorf("gpio: pin %q: %s has %d lines: %w", name, chipName, c.LineCount(), ErrNoPin)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("gpio: pin %q: no GPIO chips on this machine (no /dev/gpiochip*): %w", name, ErrNoPin)
		}
		return nil, fmt.Errorf("gpio: pin %q: chip %q not found (chips: %s): %w", name, chipName, strings.Join(names, ", "), ErrNoPin)
	}
	if p := gpioreg.ByName(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("gpio: pin %q: no line of that name (%d pins known): %w", name, len(gpioreg.All()), ErrNoPin)
}

// EdgeTimer is implemented by pins that know when the edge WaitForEdge
// last returned happened (virtual pins); others are stamped on return.
type EdgeTimer interface {
	LastEdge() time.Time
}

// InputConfig configures an Input.
type InputConfig struct {
	Name      string // "lobby-contact", for errors
	ActiveLow bool
	Pull      gpio.Pull     // gpio.PullUp when zero (PullNoChange)
	Debounce  time.Duration // default 20 ms
	Now       func() time.Time
}

// Input is a debounced input line.
type Input struct {
	pin gpio.PinIn
	cfg InputConfig
	mu  sync.Mutex
	on  bool
}

// NewInput wraps pin; it does no I/O.
func NewInput(pin gpio.PinIn, cfg InputConfig) (*Input, error) {
	if pin == nil {
		return nil, fmt.Errorf("gpio: input %q: no pin", cfg.Name)
	}
	if cfg.Name == "" {
		cfg.Name = pin.Name()
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.Debounce < 0 || cfg.Debounce > 10*time.Second {
		return nil, fmt.Errorf("gpio: input %q: debounce %v: want 0..10s", cfg.Name, cfg.Debounce)
	}
	if cfg.Pull == gpio.PullNoChange {
		cfg.Pull = gpio.PullUp
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Input{pin: pin, cfg: cfg}, nil
}

// Name is the input's name.
func (in *Input) Name() string { return in.cfg.Name }

// Active returns the last settled state.
func (in *Input) Active() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.on
}

func (in *Input) level() bool { return (in.pin.Read() == gpio.High) != in.cfg.ActiveLow }

// Run watches the line until ctx ends. It reports the state at start, then
// every settled change, with the time of the edge that began it. handle
// runs on Run's goroutine.
func (in *Input) Run(ctx context.Context, handle func(active bool, at time.Time)) error {
	if err := in.pin.In(in.cfg.Pull, gpio.BothEdges); err != nil {
		return fmt.Errorf("gpio: input %q (%s): %w", in.cfg.Name, in.pin, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = in.pin.Halt() })
	defer stop()
	state := in.level()
	in.mu.Lock()
	in.on = state
	in.mu.Unlock()
	handle(state, in.cfg.Now())
	timer, _ := in.pin.(EdgeTimer)
	for ctx.Err() == nil {
		if !in.pin.WaitForEdge(100 * time.Millisecond) {
			continue
		}
		at := in.cfg.Now()
		if timer != nil {
			at = timer.LastEdge()
		}
		// Settle: wait until no edge came for the debounce time.
		for in.pin.WaitForEdge(in.cfg.Debounce) && ctx.Err() == nil {
		}
		if ctx.Err() != nil {
			break
		}
		if now := in.level(); now != state {
			state = now
			in.mu.Lock()
			in.on = state
			in.mu.Unlock()
			handle(state, at)
		}
	}
	return ctx.Err()
}

// OutputConfig configures an Output.
type OutputConfig struct {
	Name      string
	ActiveLow bool
}

// Output is an output line (strike, siren, barrier relay).
type Output struct {
	pin   gpio.PinOut
	cfg   OutputConfig
	mu    sync.Mutex
	on    bool
	until time.Time
	timer *time.Timer
}

// NewOutput wraps pin and drives it inactive.
func NewOutput(pin gpio.PinOut, cfg OutputConfig) (*Output, error) {
	if pin == nil {
		return nil, fmt.Errorf("gpio: output %q: no pin", cfg.Name)
	}
	if cfg.Name == "" {
		cfg.Name = pin.Name()
	}
	o := &Output{pin: pin, cfg: cfg}
	if err := o.Set(false); err != nil {
		return nil, err
	}
	return o, nil
}

// Name is the output's name.
func (o *Output) Name() string { return o.cfg.Name }

func (o *Output) write(on bool) error {
	l := gpio.Level(on != o.cfg.ActiveLow)
	if err := o.pin.Out(l); err != nil {
		return fmt.Errorf("gpio: output %q (%s): set %v: %w", o.cfg.Name, o.pin, l, err)
	}
	o.on = on
	return nil
}

// Set turns the output on or off and cancels a running pulse.
func (o *Output) Set(on bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	return o.write(on)
}

// Active tells whether the output is on.
func (o *Output) Active() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.on
}

// Pulse turns the output on now and off after d, without blocking. A pulse
// while one runs extends it to end d from now at the latest end.
func (o *Output) Pulse(d time.Duration) error {
	if d <= 0 || d > time.Hour {
		return fmt.Errorf("gpio: output %q: pulse of %v: want 1ns..1h", o.cfg.Name, d)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	until := time.Now().Add(d)
	if !o.on {
		if err := o.write(true); err != nil {
			return err
		}
	}
	if o.timer != nil && o.until.After(until) {
		return nil
	}
	if o.timer != nil {
		o.timer.Stop()
	}
	o.until = until
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.timer == t {
			o.timer = nil
			_ = o.write(false)
		}
	})
	o.timer = t
	return nil
}

// Close turns the output off.
func (o *Output) Close() error { return o.Set(false) }
