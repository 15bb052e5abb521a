package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/gateway/lane/lanesim"
)

// laneBench is the lot's entrance of the demo and of bench tests: an
// entry and an exit lane (package gateway/lane/lanesim) on simulated GPIO
// lines, with a Wiegand tag reader at the entry. The lanes follow the
// lot's bay sensors: a vehicle drives in while the sensors show more cars
// than the lanes counted in, and out while they show fewer, so that the
// lot's count and its zones tell the same story (the bays change at
// --speed, the lanes on the wall clock, so the count lags while the lot
// fills or empties fast). Vehicles are of every kind: visitors, residents
// with a tag (the doors' simulated cards), now and then a tailgater, a
// driver who stops under the barrier, and, with --lane-jam, an exit
// barrier that jams for one vehicle. The lines are
// served by the doors' GPIO simulator when there are doors, else by its
// own at the same socket.
type laneBench struct {
	in, out  *lanesim.Sim
	lanes    []benchLane
	srv      *simgpio.Server
	socket   string
	own      bool // the server is this bench's (no doors)
	every    time.Duration
	jam      float64
	capacity int
	seed     uint64
	log      *slog.Logger
	// cars is the number of cars the bay sensors see; nil plays vehicles
	// at random, every --lane-every.
	cars func() int

	mu     sync.Mutex
	inside int
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// benchLane is one lane's lines.
type benchLane struct {
	name, direction                              string
	open, opened, closed, arming, safety, d0, d1 string
	visitorsAuto                                 bool
}

// Lane timing on the wall clock (the lanes do not follow --speed).
const (
	laneMotor    = 2 * time.Second
	laneSettle   = 700 * time.Millisecond
	laneOpenTime = 20 * time.Second
)

func newLaneBench(o *parkingOptions, logger *slog.Logger) *laneBench {
	if !o.lanes {
		return nil
	}
	l := func(n int) string { return fmt.Sprintf("gpiochip1:%d", n) }
	return &laneBench{every: o.laneEvery, jam: o.laneJam, capacity: o.laneCapacity, seed: o.seed, log: logger.With("sim", "lanes"),
		lanes: []benchLane{
			{name: "gate-in", direction: "in", open: l(1), opened: l(2), closed: l(3), arming: l(4), safety: l(5), d0: l(6), d1: l(7), visitorsAuto: true},
			{name: "gate-out", direction: "out", open: l(11), opened: l(12), closed: l(13), arming: l(14), safety: l(15), visitorsAuto: true},
		}}
}

// lines are the GPIO lines of the lanes.
func (b *laneBench) lines() []string {
	if b == nil {
		return nil
	}
	var out []string
	for _, ln := range b.lanes {
		for _, s := range []string{ln.open, ln.opened, ln.closed, ln.arming, ln.safety, ln.d0, ln.d1} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// output hands a level the gateway wrote to the lanes' barriers.
func (b *laneBench) output(line string, l gpio.Level) {
	if b == nil {
		return
	}
	b.mu.Lock()
	in, out := b.in, b.out
	b.mu.Unlock()
	for _, s := range []*lanesim.Sim{in, out} {
		if s != nil {
			s.Output(line, l)
		}
	}
}

// attach puts the lanes on srv, which serves their lines.
func (b *laneBench) attach(srv *simgpio.Server, socket string) error {
	sims := make([]*lanesim.Sim, len(b.lanes))
	for i, ln := range b.lanes {
		s, err := lanesim.New(srv, lanesim.Config{Arming: ln.arming, Safety: ln.safety, Opened: ln.opened, Closed: ln.closed,
			Open: ln.open, Motor: laneMotor, Settle: laneSettle, Patience: 15 * time.Second})
		if err != nil {
			return fmt.Errorf("lanes: %w", err)
		}
		sims[i] = s
	}
	b.mu.Lock()
	b.srv, b.socket, b.in, b.out = srv, socket, sims[0], sims[1]
	b.mu.Unlock()
	return nil
}

// start serves the lanes' lines on a GPIO simulator of their own (when
// there are no doors whose simulator serves them).
func (b *laneBench) start(o *parkingOptions, logger *slog.Logger) error {
	if b == nil || b.srv != nil {
		return nil
	}
	socket := o.gpioSocket
	if socket == "" {
		socket = filepath.Join(o.dir, "gpio.sock")
	}
	srv, err := simgpio.NewServer(b.lines(), simgpio.ServerOptions{Logger: logger,
		OnOut: func(line string, l gpio.Level, _ time.Time) { b.output(line, l) }})
	if err != nil {
		return fmt.Errorf("lanes: %w", err)
	}
	if err := b.attach(srv, socket); err != nil {
		return err
	}
	ln, err := simgpio.Listen(socket)
	if err != nil {
		return fmt.Errorf("lanes: %w", err)
	}
	b.own = true
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.wg.Add(1)
	go func() { defer b.wg.Done(); srv.Serve(ctx, ln) }()
	return nil
}

// run plays vehicles at both lanes until ctx ends.
func (b *laneBench) run(ctx context.Context) {
	if b == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.play(ctx, true) }()
	go func() { defer wg.Done(); b.play(ctx, false) }()
	wg.Wait()
}

// play sends vehicles through the entry (in) or the exit lane.
func (b *laneBench) play(ctx context.Context, in bool) {
	salt := uint64(0x1a4e)
	sim, name := b.out, "gate-out"
	if in {
		salt, sim, name = 0x1a4f, b.in, "gate-in"
	}
	rng := rand.New(rand.NewPCG(b.seed, salt))
	log := b.log.With("lane", name)
	for ctx.Err() == nil {
		sleepCtx(ctx, b.every/2+time.Duration(rng.Int64N(int64(b.every))))
		b.mu.Lock()
		inside := b.inside
		b.mu.Unlock()
		if b.cars != nil {
			if cars := b.cars(); in && inside >= cars || !in && inside <= cars {
				continue // the count is in step with the sensors
			}
		}
		if !in && inside == 0 {
			continue
		}
		v := lanesim.Vehicle{Tailgater: rng.IntN(100) < 6 && (in || inside > 1)}
		kind := "visitor"
		switch p := rng.IntN(100); {
		case in && p < 35:
			c := accessCards[rng.IntN(len(accessCards))]
			kind = "resident " + c.id
			ln := b.lanes[0]
			v.Card = "10:" + strconv.Itoa(int(c.number))
			v.Present = func(context.Context, string) error {
				return lanesim.SendWiegand(b.srv, ln.d0, ln.d1, 10, uint32(c.number))
			}
		case p >= 95:
			kind = "driver who stops under the barrier"
			v.Park = laneOpenTime + 5*time.Second
		}
		jam := !in && rng.Float64() < b.jam
		if jam {
			log.Warn("the exit barrier jams for the next vehicle")
			sim.SetStuck(true)
		}
		o, err := sim.Drive(ctx, v)
		if jam {
			sim.SetStuck(false)
		}
		if err != nil {
			return
		}
		log.Info("vehicle", "kind", kind, "tailgater", v.Tailgater, "passed", o.Passed, "refused", o.Refused)
		b.mu.Lock()
		if in {
			b.inside += o.Passed
		} else {
			b.inside = max(b.inside-o.Passed, 0)
		}
		b.mu.Unlock()
	}
}

func (b *laneBench) close() {
	if b == nil || !b.own {
		return
	}
	b.stop()
	b.wg.Wait()
	os.Remove(b.socket)
}

// config renders the lots and lanes sections, and the gpio section when
// the doors do not write it.
func (b *laneBench) config(o *parkingOptions) string {
	if b == nil {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "lots:\n  - name: %s\n    capacity: %d\n", strconv.Quote(o.lot), b.capacity)
	if o.signs != nil && o.signs.gate != 0 {
		s.WriteString("    sign: {device: sign-gate, point: free}   # the entrance sign shows the lot's free count\n")
	}
	s.WriteString("lanes:\n")
	for _, ln := range b.lanes {
		fmt.Fprintf(&s, "  - name: %s\n    lot: %s\n    direction: %s\n    barrier: {open: %q, opened: {pin: %q, active_low: true}, closed: {pin: %q, active_low: true}, motor_time: 6s}\n"+
			"    arming: {pin: %q, active_low: true}\n    safety: {pin: %q, active_low: true}\n    visitors: auto\n    open_time: %s\n",
			ln.name, strconv.Quote(o.lot), ln.direction, ln.open, ln.opened, ln.closed, ln.arming, ln.safety, laneOpenTime)
		if ln.d0 != "" {
			fmt.Fprintf(&s, "    wiegand: {d0: %q, d1: %q}\n", ln.d0, ln.d1)
		}
	}
	if b.own {
		fmt.Fprintf(&s, "gpio:\n  simulator: %s   # devsim's simulated lane hardware: a bench test, no real GPIO line\n", strconv.Quote(b.socket))
	}
	return s.String()
}
