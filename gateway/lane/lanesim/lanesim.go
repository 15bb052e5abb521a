// Package lanesim simulates a parking lane's field side on GPIO lines: the
// two induction loops, a barrier whose motor takes time to move (or that
// is stuck), and vehicles that arrive, show a credential or not, wait for
// the barrier, pass it and sometimes bring a second car through on the
// same opening. It drives a GPIO simulator's lines (simgpio.Server, or
// anything with Drive) and is told what the gateway writes to the
// barrier's outputs (Output, from simgpio.ServerOptions.OnOut), so the
// gateway runs its real path from line edges to barrier commands. Tests
// and `devsim parking --lanes` use it.
package lanesim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/internal/clock"
)

// Lines is the simulator side of GPIO lines (simgpio.Server).
type Lines interface {
	Drive(line string, l gpio.Level) error
}

// Config names a lane's lines and the barrier's behaviour. Inputs
// (loops, positions) are active low, as the gateway config of the
// simulated lanes says (active_low: true): idle lines stay high. Outputs
// are active high.
type Config struct {
	Arming, Safety string // loop lines
	Opened, Closed string // position input lines; "" when the barrier has none
	Open, Close    string // the barrier's outputs; Close "" holds Open while up
	Motor          time.Duration
	Stuck          bool // the barrier never moves
	// Settle is how long a vehicle stays on a loop at least and how long
	// a loop stays clear between two vehicles; it must be longer than
	// the gateway's debounce (default 150 ms).
	Settle time.Duration
	// Patience is how long a vehicle waits for the barrier before it
	// backs out (default 10 Motor + 2 s).
	Patience time.Duration
	// Confirm, when set, is called after each loop change and returns once
	// the gateway has seen it (a test that reads the lane's state): a
	// vehicle then never moves faster than the gateway can follow, on
	// however loaded a machine. Nil: the vehicle keeps Settle only.
	Confirm func(ctx context.Context, line string, active bool) error
	Clock   clock.Clock
}

// Sim is one simulated lane.
type Sim struct {
	cfg   Config
	lines Lines
	clk   clock.Clock

	mu       sync.Mutex
	up       bool // the arm is up
	moving   bool
	resting  bool // the arm came down onto a vehicle and rests on it
	onSafety bool // a vehicle is on the safety loop
	target   bool
	gen      int
	changed  chan struct{}
	moves    int
	drive    sync.Mutex // one vehicle at a time
}

// New makes a lane on lines, its barrier down and its loops clear.
func New(lines Lines, cfg Config) (*Sim, error) {
	if cfg.Arming == "" || cfg.Safety == "" || cfg.Open == "" {
		return nil, errors.New("lanesim: arming, safety and open lines are required")
	}
	if cfg.Motor <= 0 {
		cfg.Motor = 2 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 150 * time.Millisecond
	}
	if cfg.Patience <= 0 {
		cfg.Patience = 10*cfg.Motor + 2*time.Second
	}
	s := &Sim{cfg: cfg, lines: lines, clk: clock.OrReal(cfg.Clock), changed: make(chan struct{})}
	for _, l := range []string{cfg.Arming, cfg.Safety, cfg.Opened} {
		if err := s.set(l, false); err != nil {
			return nil, err
		}
	}
	if err := s.set(cfg.Closed, true); err != nil {
		return nil, err
	}
	return s, nil
}

// set drives an input line active or not; "" is no line.
func (s *Sim) set(line string, active bool) error {
	if line == "" {
		return nil
	}
	l := gpio.High
	if active {
		l = gpio.Low
	}
	if err := s.lines.Drive(line, l); err != nil {
		return fmt.Errorf("lanesim: %w", err)
	}
	return nil
}

// Output is told a level the gateway wrote to a line; lines that are not
// this lane's are ignored. Give it to simgpio.ServerOptions.OnOut.
func (s *Sim) Output(line string, l gpio.Level) {
	active := l == gpio.High
	switch {
	case line == s.cfg.Open && s.cfg.Close == "":
		s.move(active)
	case line == s.cfg.Open && active:
		s.move(true)
	case line == s.cfg.Close && active:
		s.move(false)
	}
}

// move starts the motor toward up (true) or down.
func (s *Sim) move(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Stuck || (s.target == up && (s.moving || s.up == up)) {
		return
	}
	s.target, s.moving, s.resting = up, true, false
	s.gen++
	s.moves++
	left := s.cfg.Closed
	if s.up {
		left = s.cfg.Opened
	}
	s.notifyLocked()
	go func() { _ = s.set(left, false) }()
	s.runMotorLocked()
}

// runMotorLocked lets the motor finish the current move after Motor. An
// arm coming down onto a vehicle on the safety loop rests on it until
// the vehicle is gone (or the barrier is told to go up).
func (s *Sim) runMotorLocked() {
	gen, up := s.gen, s.target
	go func() {
		<-s.clk.After(s.cfg.Motor)
		s.mu.Lock()
		if s.gen != gen {
			s.mu.Unlock()
			return // reversed on the way
		}
		if !up && s.onSafety {
			s.resting = true
			s.mu.Unlock()
			return
		}
		s.up, s.moving = up, false
		s.notifyLocked()
		s.mu.Unlock()
		reached := s.cfg.Closed
		if up {
			reached = s.cfg.Opened
		}
		_ = s.set(reached, true)
	}()
}

// safety puts a vehicle on the safety loop or takes it off. A vehicle
// that would come onto it under an arm that is fully down stays back:
// safety(true) then reports false.
func (s *Sim) safety(on bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && !s.up && !s.moving {
		return false
	}
	s.onSafety = on
	if !on && s.resting {
		s.resting = false
		s.runMotorLocked()
	}
	return true
}

func (s *Sim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetStuck makes the barrier stop obeying (true) or obey again.
func (s *Sim) SetStuck(stuck bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Stuck = stuck
}

// Barrier tells whether the arm is up, whether it is moving, and how many
// moves it started.
func (s *Sim) Barrier() (up, moving bool, moves int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.moving, s.moves
}

// WaitBarrier waits until the arm rests up (true) or down, for at most limit.
func (s *Sim) WaitBarrier(ctx context.Context, up bool, limit time.Duration) bool {
	deadline := s.clk.After(limit)
	for {
		s.mu.Lock()
		ok := s.up == up && !s.moving
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Vehicle is one arrival at the lane.
type Vehicle struct {
	// Card is presented on arrival ("" for a visitor) through Present.
	Card    string
	Present func(ctx context.Context, card string) error
	// Tailgater: a second car follows closely and passes on the same
	// opening.
	Tailgater bool
	// Park keeps the vehicle on the safety loop this long (a driver who
	// stops under the barrier); 0: Settle.
	Park time.Duration
}

// Outcome is what happened to a vehicle.
type Outcome struct {
	Passed  int  // vehicles that passed: 0, 1, or 2 with a tailgater
	Refused bool // the barrier did not open; the vehicle backed out
}

// Drive runs one vehicle (and its tailgater) through the lane. It returns
// once the last vehicle left the safety loop, or backed out.
func (s *Sim) Drive(ctx context.Context, v Vehicle) (Outcome, error) {
	s.drive.Lock()
	defer s.drive.Unlock()
	settle := func(d time.Duration) error {
		select {
		case <-s.clk.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	loop := func(line string, active bool) error {
		if err := s.set(line, active); err != nil {
			return err
		}
		if s.cfg.Confirm != nil {
			return s.cfg.Confirm(ctx, line, active)
		}
		return nil
	}
	if err := loop(s.cfg.Arming, true); err != nil {
		return Outcome{}, err
	}
	if err := settle(s.cfg.Settle); err != nil {
		return Outcome{}, err
	}
	if v.Card != "" && v.Present != nil {
		if err := v.Present(ctx, v.Card); err != nil {
			return Outcome{}, fmt.Errorf("lanesim: present %s: %w", v.Card, err)
		}
	}
	if !s.WaitBarrier(ctx, true, s.cfg.Patience) {
		if err := loop(s.cfg.Arming, false); err != nil {
			return Outcome{}, err
		}
		return Outcome{Refused: true}, settle(s.cfg.Settle)
	}
	out := Outcome{}
	cars := 1
	if v.Tailgater {
		cars = 2
	}
	for i := range cars {
		if !s.safety(true) {
			// The arm came down before the tailgater got under it: it
			// backs off and arrives again like any vehicle.
			if err := loop(s.cfg.Arming, false); err != nil {
				return out, err
			}
			if err := settle(s.cfg.Settle); err != nil {
				return out, err
			}
			if err := loop(s.cfg.Arming, true); err != nil {
				return out, err
			}
			if !s.WaitBarrier(ctx, true, s.cfg.Patience) || !s.safety(true) {
				out.Refused = true
				return out, loop(s.cfg.Arming, false)
			}
		}
		if err := loop(s.cfg.Safety, true); err != nil {
			return out, err
		}
		if i == cars-1 {
			if err := loop(s.cfg.Arming, false); err != nil {
				return out, err
			}
		}
		park := s.cfg.Settle
		if v.Park > 0 && i == 0 {
			park = v.Park
		}
		if err := settle(park); err != nil {
			return out, err
		}
		if i > 0 {
			// The tailgater waits under the barrier until it is up again.
			s.WaitBarrier(ctx, true, s.cfg.Patience)
		}
		s.safety(false)
		if err := loop(s.cfg.Safety, false); err != nil {
			return out, err
		}
		out.Passed++
		if err := settle(s.cfg.Settle); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SendWiegand sends card "facility:number" as a 26-bit Wiegand frame on
// the lines d0 and d1, as a reader at the lane would (80 µs pulses, 1 ms
// apart; the gateway judges them by the simulator's edge times).
func SendWiegand(lines Lines, d0, d1 string, facility, number uint32) error {
	v, n, err := wiegand.Encode(wiegand.H10301, facility, number)
	if err != nil {
		return fmt.Errorf("lanesim: card %d:%d: %w", facility, number, err)
	}
	for i := n - 1; i >= 0; i-- {
		line := d0
		if v>>i&1 == 1 {
			line = d1
		}
		if err := lines.Drive(line, gpio.Low); err != nil {
			return err
		}
		time.Sleep(80 * time.Microsecond)
		if err := lines.Drive(line, gpio.High); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
