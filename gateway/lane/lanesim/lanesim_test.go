package lanesim

import (
	"context"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/internal/testenv"
)

// lines records the levels the simulator drives.
type lines struct {
	mu sync.Mutex
	l  map[string]gpio.Level
}

func (ls *lines) Drive(line string, l gpio.Level) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.l[line] = l
	return nil
}

func (ls *lines) active(line string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.l[line] == gpio.Low
}

func newSim(t *testing.T, clk clock.Clock) (*Sim, *lines) {
	t.Helper()
	ls := &lines{l: map[string]gpio.Level{}}
	s, err := New(ls, Config{Arming: "a", Safety: "s", Opened: "up", Closed: "down", Open: "open",
		Motor: 30 * time.Millisecond, Settle: 5 * time.Millisecond, Patience: 2 * time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s, ls
}

// The motor takes its time, the position inputs follow, a stuck barrier
// does not move, and an arm coming down onto a vehicle on the safety loop
// rests on it until the vehicle is gone.
func TestBarrierModel(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC))
	s, ls := newSim(t, clk)
	state := func() (up, moving bool) { up, moving, _ = s.Barrier(); return }
	if !ls.active("down") || ls.active("up") {
		t.Fatal("the barrier does not start down")
	}
	s.Output("open", gpio.High)
	if up, moving := state(); up || !moving {
		t.Fatalf("not moving up at once: up %v moving %v", up, moving)
	}
	clk.BlockUntil(1) // the motor
	clk.Advance(29 * time.Millisecond)
	if up, _ := state(); up {
		t.Fatal("up before the motor time")
	}
	clk.Advance(time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "the barrier up with its opened input", func() bool {
		up, moving := state()
		return up && !moving && ls.active("up") && !ls.active("down")
	})
	if !s.safety(true) {
		t.Fatal("a vehicle could not get under the raised arm")
	}
	s.Output("open", gpio.Low) // lower onto the vehicle
	clk.BlockUntil(1)
	clk.Advance(time.Second)
	testenv.WaitFor(t, 5*time.Second, "the arm resting on the vehicle", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.resting
	})
	if _, moving := state(); !moving || ls.active("down") {
		t.Fatalf("the arm closed through a vehicle: moving %v down %v", moving, ls.active("down"))
	}
	s.safety(false)
	clk.BlockUntil(1)
	clk.Advance(30 * time.Millisecond)
	testenv.WaitFor(t, 5*time.Second, "the arm down once the vehicle left", func() bool {
		up, moving := state()
		return !up && !moving && ls.active("down")
	})
	if s.safety(true) {
		t.Fatal("a vehicle got under an arm that is down")
	}
	s.SetStuck(true)
	s.Output("open", gpio.High)
	if _, moving := state(); moving {
		t.Fatal("a stuck barrier moved")
	}
}

// A visitor nobody lets in backs out after Patience.
func TestVehicleBacksOut(t *testing.T) {
	s, ls := newSim(t, nil)
	s.cfg.Patience = 50 * time.Millisecond
	o, err := s.Drive(context.Background(), Vehicle{})
	if err != nil || !o.Refused || o.Passed != 0 {
		t.Fatalf("outcome %+v, %v", o, err)
	}
	testenv.WaitFor(t, time.Second, "the arming loop clear", func() bool { return !ls.active("a") })
}
