package main

import (
	"context"
	"encoding/json"
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
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/internal/ptypair"
)

// accessSim is the access-control hardware of the demo and of bench tests:
// an OSDP reader per door on a pseudo-terminal RS-485 line (DIR/ttyDOOR)
// and each door's strike, contact and exit button on simulated GPIO lines
// served at a unix socket (gpio.simulator in the written config). People
// come by at random: most present a card that the credentials grant and
// walk through, some an unknown card, some leave with the exit button; now
// and then a door is forced or held open.
type accessSim struct {
	doors  []simDoor
	line   *osdpsim.Line
	pair   *ptypair.Pair
	gpio   *simgpio.Server
	socket string
	every  time.Duration
	seed   uint64
	log    *slog.Logger

	strike chan string // lines the gateway energized
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// simDoor is one door: its reader and its lines.
type simDoor struct {
	name                   string
	reader                 *osdpsim.Reader
	addr                   int
	strike, contact, exitB string
}

// Door timing of the written config.
const (
	accessUnlock = 5 * time.Second
	accessHeld   = 20 * time.Second
)

// accessCards are the cards the written credentials grant (facility 10),
// by credential id.
var accessCards = []struct {
	id     string
	number uint16
}{{"res-0101", 1101}, {"res-0102", 1102}, {"res-0205", 1205}, {"staff-07", 7007}, {"courier-1", 9001}}

var doorNames = []string{"lobby", "garage", "bike-room", "back-gate"}

// startAccess starts n doors; n 0 starts nothing.
func startAccess(o *parkingOptions, n int, logger *slog.Logger) (*accessSim, error) {
	if n == 0 {
		return nil, nil
	}
	socket := o.gpioSocket
	if socket == "" {
		socket = filepath.Join(o.dir, "gpio.sock")
	}
	a := &accessSim{socket: socket, every: o.accessEvery, seed: o.seed, log: logger.With("sim", "access"), strike: make(chan string, 16)}
	var err error
	if a.line, err = osdpsim.New(osdpsim.Config{Name: "rs485-doors", Baud: 115200, Logger: logger}); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	var lines []string
	for i := 1; i <= n; i++ {
		d := simDoor{name: fmt.Sprintf("door-%d", i), addr: i,
			strike: fmt.Sprintf("gpiochip0:%d", 10+i), contact: fmt.Sprintf("gpiochip0:%d", 20+i), exitB: fmt.Sprintf("gpiochip0:%d", 30+i)}
		if i <= len(doorNames) {
			d.name = doorNames[i-1]
		}
		if d.reader, err = a.line.Add(osdpsim.ReaderConfig{Addr: byte(i)}); err != nil {
			return nil, fmt.Errorf("access: %w", err)
		}
		a.doors = append(a.doors, d)
		lines = append(lines, d.strike, d.contact, d.exitB)
	}
	lines = append(lines, o.laneSim.lines()...) // the lanes' lines share the simulator
	a.gpio, err = simgpio.NewServer(lines, simgpio.ServerOptions{Logger: logger, OnOut: func(line string, l gpio.Level, t time.Time) {
		o.laneSim.output(line, l)
		if l == gpio.High {
			select {
			case a.strike <- line:
			default:
			}
		}
	}})
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if o.laneSim != nil {
		if err := o.laneSim.attach(a.gpio, socket); err != nil {
			return nil, err
		}
	}
	ln, err := simgpio.Listen(socket)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if a.pair, err = ptypair.Open(filepath.Join(o.dir, "ttyDOOR")); err != nil {
		ln.Close()
		return nil, fmt.Errorf("access: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.gpio.Serve(ctx, ln) }()
	go func() {
		defer a.wg.Done()
		if err := a.line.Serve(ctx, a.pair.Master); err != nil && ctx.Err() == nil {
			a.log.Warn("door bus stopped serving", "err", err)
		}
	}()
	logger.Info("door bus plugged in", "path", a.pair.Path(), "readers", n, "gpio_socket", socket)
	return a, nil
}

// run plays visitors at the doors until ctx ends.
func (a *accessSim) run(ctx context.Context) {
	if a == nil {
		return
	}
	rng := rand.New(rand.NewPCG(a.seed, 0xacce55))
	for i := 0; ctx.Err() == nil; i++ {
		wait := a.every/2 + time.Duration(rng.Int64N(int64(a.every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		p := rng.IntN(100)
		if i < len(firstVisits) { // every kind of visit early on, then at random
			p = firstVisits[i]
		}
		a.visit(ctx, &a.doors[i%len(a.doors)], rng, p)
	}
}

// firstVisits are the first visitors (as visit's p): a card, an unknown
// card, the exit button, a card and a forced door.
var firstVisits = []int{0, 60, 80, 0, 90}

// visit plays one visitor at door d: p in 0..99 picks the kind.
func (a *accessSim) visit(ctx context.Context, d *simDoor, rng *rand.Rand, p int) {
	log := a.log.With("door", d.name)
	switch {
	case p < 55: // a resident with a valid card walks through
		c := accessCards[rng.IntN(len(accessCards))]
		log.Info("card presented", "credential", c.id)
		d.reader.PresentWiegand26(10, c.number)
		if a.waitStrike(ctx, d) {
			a.pass(ctx, d, 3*time.Second)
		}
	case p < 75: // an unknown card: denied, nobody goes in
		n := uint16(5000 + rng.IntN(1000))
		log.Info("unknown card presented", "card", fmt.Sprintf("10:%d", n))
		d.reader.PresentWiegand26(10, n)
	case p < 88: // someone leaves with the exit button
		log.Info("exit button pressed")
		a.drive(d.exitB, gpio.Low)
		sleepCtx(ctx, 200*time.Millisecond)
		a.drive(d.exitB, gpio.High)
		if a.waitStrike(ctx, d) {
			a.pass(ctx, d, 2*time.Second)
		}
	case p < 94: // forced open: no card, no button
		log.Info("door forced open")
		a.pass(ctx, d, 4*time.Second)
	default: // a valid card, then the door is propped open past held_time
		c := accessCards[rng.IntN(len(accessCards))]
		log.Info("card presented; the door will be held open", "credential", c.id)
		d.reader.PresentWiegand26(10, c.number)
		if a.waitStrike(ctx, d) {
			a.pass(ctx, d, accessHeld+5*time.Second)
		}
	}
}

// waitStrike waits for the gateway to energize d's strike.
func (a *accessSim) waitStrike(ctx context.Context, d *simDoor) bool {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case line := <-a.strike:
			if line == d.strike {
				a.log.Info("strike energized by the gateway", "door", d.name)
				return true
			}
		case <-t.C:
			a.log.Warn("the gateway did not energize the strike (is it running, with the credentials synced?)", "door", d.name)
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// pass opens the door (contact active low) for open, then closes it.
func (a *accessSim) pass(ctx context.Context, d *simDoor, open time.Duration) {
	a.drive(d.contact, gpio.Low)
	sleepCtx(ctx, open)
	a.drive(d.contact, gpio.High)
}

func (a *accessSim) drive(line string, l gpio.Level) {
	if err := a.gpio.Drive(line, l); err != nil {
		a.log.Error("drive", "err", err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// close stops the doors.
func (a *accessSim) close() {
	if a == nil {
		return
	}
	a.stop()
	a.pair.Close()
	a.wg.Wait()
	os.Remove(a.socket)
}

// config renders the door bus, the reader devices and the doors and gpio
// sections for the gateway config.
func (a *accessSim) config(o *parkingOptions) (bus, devices, doors string) {
	if a == nil {
		return "", "", ""
	}
	bus = fmt.Sprintf("  - name: rs485-doors\n    port: %s\n    baud: 115200\n    timeout: 300ms\n", strconv.Quote(a.pair.Path()))
	var dv, dr strings.Builder
	dr.WriteString("doors:\n")
	for _, d := range a.doors {
		fmt.Fprintf(&dv, "  - id: reader-%d\n    driver: osdp\n    bus: rs485-doors\n    unit: %d\n    poll: 200ms\n    tags: {door: %s}\n", d.addr, d.addr, d.name)
		fmt.Fprintf(&dr, "  - name: %s\n    readers: [reader-%d]\n    strike: %q\n    contact: {pin: %q, active_low: true}\n    exit: {pin: %q, active_low: true}\n    unlock_time: %s\n    held_time: %s\n",
			d.name, d.addr, d.strike, d.contact, d.exitB, accessUnlock, accessHeld)
	}
	fmt.Fprintf(&dr, "gpio:\n  simulator: %s   # devsim's simulated door hardware: a bench test, no real GPIO line\n", strconv.Quote(a.socket))
	return bus, dv.String(), dr.String()
}

// syncCommand is the credentials.sync command (as cloudd's API takes it)
// that grants the simulated cards at every door.
func (a *accessSim) syncCommand() ([]byte, error) {
	type cred struct {
		ID   string `json:"id"`
		Card string `json:"card"`
	}
	var creds []cred
	for _, c := range accessCards {
		creds = append(creds, cred{c.id, fmt.Sprintf("10:%d", c.number)})
	}
	list, err := json.Marshal(creds)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(map[string]any{"name": "credentials.sync", "timeout": "15s",
		"args": map[string]any{"version": 1, "credentials": string(list)}}, "", "  ")
}
