// Package vpin provides virtual GPIO pins: stand-ins for real lines in
// tests, simulators and bench rigs, behind periph's gpio.PinIO interface so
// that the code under test takes the same path as with a gpioioctl line.
//
// Concepts:
//
//   - Drive sets the level of an input line from the outside (a simulated
//     reader, a door contact). When the change matches the edge mode the
//     consumer asked for with In, an edge is queued with the time it
//     happened; WaitForEdge takes edges in order. The queue holds 16 edges
//     per line like the Linux GPIO character device; Drive blocks while it
//     is full instead of dropping, so a simulation never loses an edge.
//   - LastEdge reports when the edge that WaitForEdge last returned
//     happened. Readers that time edges (Wiegand frame assembly) use it in
//     place of their own clock, which keeps bit order and gaps exact
//     however late a busy machine runs the reader.
//   - Out records every level written with its time (History), so a test
//     can check that a door strike was energized, when and for how long.
//   - Halt interrupts a pending WaitForEdge, as periph's lines do.
package vpin

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// Change is one level written to an output.
type Change struct {
	Level gpio.Level
	Time  time.Time
}

// Pin is a virtual GPIO line. The zero value is not usable; use New.
type Pin struct {
	name string
	num  int

	edges chan time.Time
	halt  chan struct{}

	mu      sync.Mutex
	level   gpio.Level
	pull    gpio.Pull
	edge    gpio.Edge
	input   bool
	last    time.Time
	history []Change
	keep    int // most changes History keeps; 0 keeps all
	now     func() time.Time
}

var _ gpio.PinIO = (*Pin)(nil)

// New returns a virtual pin at level High (a pulled-up idle line). now is
// the clock used to stamp edges and output changes; nil means time.Now.
func New(name string, num int, now func() time.Time) *Pin {
	if now == nil {
		now = time.Now
	}
	return &Pin{name: name, num: num, edges: make(chan time.Time, 16), halt: make(chan struct{}, 1), level: gpio.High, now: now}
}

// String implements conn.Resource.
func (p *Pin) String() string { return fmt.Sprintf("%s(%d)", p.name, p.num) }

// Halt interrupts a pending WaitForEdge.
func (p *Pin) Halt() error {
	select {
	case p.halt <- struct{}{}:
	default:
	}
	return nil
}

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *Pin) Number() int { return p.num }

// Function implements pin.Pin.
func (p *Pin) Function() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.input {
		return string(gpio.IN)
	}
	return string(gpio.OUT)
}

// Func implements pin.PinFunc.
func (p *Pin) Func() pin.Func { return pin.Func(p.Function()) }

// In configures the pin as an input with the given edge detection and
// drops edges queued before.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	p.input, p.pull, p.edge = true, pull, edge
	p.mu.Unlock()
	for {
		select {
		case <-p.edges:
		default:
			return nil
		}
	}
}

// Read returns the line's level.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// WaitForEdge waits for an edge. A negative timeout waits forever (the
// gpio.PinIn convention), 0 only checks.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	var expire <-chan time.Time
	switch {
	case timeout == 0:
		select {
		case t := <-p.edges:
			p.setLast(t)
			return true
		default:
			return false
		}
	case timeout > 0:
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		expire = tm.C
	}
	select {
	case t := <-p.edges:
		p.setLast(t)
		return true
	case <-p.halt:
		return false
	case <-expire:
		return false
	}
}

func (p *Pin) setLast(t time.Time) {
	p.mu.Lock()
	p.last = t
	p.mu.Unlock()
}

// LastEdge is when the edge that WaitForEdge last returned happened.
func (p *Pin) LastEdge() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.PullUp }

// Drive sets the line's level from outside, as the wiring would, and
// queues an edge when the change matches the configured edge mode. It
// blocks while 16 edges wait to be read.
func (p *Pin) Drive(l gpio.Level) { p.DriveAt(l, time.Time{}) }

// DriveAt is Drive with the time the change happened (the pin's clock when
// zero): a link that mirrors a line of another process keeps that
// process's edge times.
func (p *Pin) DriveAt(l gpio.Level, t time.Time) {
	p.mu.Lock()
	prev := p.level
	p.level = l
	edge := p.edge
	if t.IsZero() {
		t = p.now()
	}
	p.mu.Unlock()
	if prev == l {
		return
	}
	if edge == gpio.BothEdges || (edge == gpio.FallingEdge && l == gpio.Low) || (edge == gpio.RisingEdge && l == gpio.High) {
		p.edges <- t
	}
}

// Out implements gpio.PinOut: it sets the level and records it.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.input = false
	p.level = l
	p.history = append(p.history, Change{Level: l, Time: p.now()})
	if p.keep > 0 && len(p.history) > 2*p.keep {
		p.history = append(p.history[:0], p.history[len(p.history)-p.keep:]...)
	}
	return nil
}

// KeepHistory bounds History to about the last n changes (at least n), so
// that a pin of a long-running process does not grow without end; n 0
// keeps every change.
func (p *Pin) KeepHistory(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keep = max(n, 0)
}

// PWM implements gpio.PinOut; virtual pins have no PWM.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("vpin: " + p.name + ": PWM is not supported")
}

// History returns the levels written with Out, oldest first.
func (p *Pin) History() []Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Change(nil), p.history...)
}

// Last returns the last level written with Out (zero Change when none).
func (p *Pin) Last() Change {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.history) == 0 {
		return Change{}
	}
	return p.history[len(p.history)-1]
}

// Queued is the number of edges waiting to be read.
func (p *Pin) Queued() int { return len(p.edges) }
