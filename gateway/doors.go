package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/payload"
)

// doorEntry is one access-controlled door with the lines it owns.
type doorEntry struct {
	cfg     config.Door
	door    *access.Door
	strike  *gpio.Output
	contact *gpio.Input
	exit    *gpio.Input
	wiegand *wiegand.Reader
	// reads queues card reads for the door's own goroutine, so that the
	// poller that found a card goes on polling while the decision's record
	// is made durable and the strike opens.
	reads chan access.Read
	log   *slog.Logger
}

// maxQueuedReads bounds the card reads waiting for one door.
const maxQueuedReads = 32

// newDoors builds the credential store and the doors of the config. Card
// reads of a reader device reach its door through byReader; decisions need
// neither the uplink nor the cloud.
func (g *Gateway) newDoors(openPin func(string) (periphgpio.PinIO, error)) (*access.Store, []*doorEntry, map[string]*doorEntry, error) {
	if len(g.cfg.Doors) == 0 {
		return nil, nil, nil, nil
	}
	store, err := access.OpenStore(filepath.Join(filepath.Dir(filepath.Clean(g.cfg.Outbox.Path)), "access"),
		access.StoreOptions{Logger: g.log.With("part", "access")})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("gateway: credentials: %w", err)
	}
	feedback := map[string]access.Feedback{}
	for _, d := range g.devices {
		if f, ok := d.drv.(access.Feedback); ok {
			feedback[d.spec.ID] = f
		}
	}
	var doors []*doorEntry
	byReader := map[string]*doorEntry{}
	fail := func(err error) (*access.Store, []*doorEntry, map[string]*doorEntry, error) {
		for _, de := range doors {
			de.close()
		}
		return nil, nil, nil, err
	}
	for _, dc := range g.cfg.Doors {
		de := &doorEntry{cfg: dc, reads: make(chan access.Read, maxQueuedReads), log: g.log.With("door", dc.Name)}
		doors = append(doors, de)
		pin, err := openPin(dc.Strike.Name)
		if err != nil {
			return fail(fmt.Errorf("gateway: door %s: strike: %w", dc.Name, err))
		}
		if de.strike, err = gpio.NewOutput(pin, gpio.OutputConfig{Name: dc.Name + "-strike", ActiveLow: dc.Strike.ActiveLow}); err != nil {
			return fail(fmt.Errorf("gateway: door %s: %w", dc.Name, err))
		}
		for _, in := range []struct {
			what string
			pin  *config.Pin
			dst  **gpio.Input
		}{{"contact", dc.Contact, &de.contact}, {"exit", dc.Exit, &de.exit}} {
			if in.pin == nil {
				continue
			}
			p, err := openPin(in.pin.Name)
			if err != nil {
				return fail(fmt.Errorf("gateway: door %s: %s: %w", dc.Name, in.what, err))
			}
			if *in.dst, err = gpio.NewInput(p, gpio.InputConfig{Name: dc.Name + "-" + in.what, ActiveLow: in.pin.ActiveLow}); err != nil {
				return fail(fmt.Errorf("gateway: door %s: %w", dc.Name, err))
			}
		}
		fb := map[string]access.Feedback{}
		for _, r := range dc.Readers {
			if f := feedback[r]; f != nil {
				fb[r] = f
			}
			byReader[r] = de
		}
		if dc.Wiegand != nil {
			d0, err := openPin(dc.Wiegand.D0)
			if err != nil {
				return fail(fmt.Errorf("gateway: door %s: wiegand d0: %w", dc.Name, err))
			}
			d1, err := openPin(dc.Wiegand.D1)
			if err != nil {
				return fail(fmt.Errorf("gateway: door %s: wiegand d1: %w", dc.Name, err))
			}
			if de.wiegand, err = wiegand.New(wiegand.Config{Name: dc.Name + "-wiegand", D0: d0, D1: d1, Logger: g.log.With("door", dc.Name)}); err != nil {
				return fail(fmt.Errorf("gateway: door %s: %w", dc.Name, err))
			}
		}
		de.door, err = access.NewDoor(access.Config{Name: dc.Name, Store: store, Strike: de.strike, Feedback: fb,
			UnlockTime: dc.UnlockTime, HeldTime: dc.HeldTime, Now: g.now, Logger: g.log, // the door adds its name itself
			Emit:   func(r payload.Record) { g.Emit(context.Background(), payload.Event, []payload.Record{r}) },
			Record: g.recordAction})
		if err != nil {
			return fail(fmt.Errorf("gateway: door %s: %w", dc.Name, err))
		}
	}
	return store, doors, byReader, nil
}

// recordAction stores a record that a door is about to act on (its access
// decision, before the strike moves) and returns once it is durable: the
// outbox commits it at once (AppendNow), without the commit interval,
// together with whatever else is queued, so the records of doors deciding
// at the same moment share one fsync. No ctx may cut it short: the door
// acts either way, and its record must not be lost.
func (g *Gateway) recordAction(ctx context.Context, r payload.Record) error {
	g.events.Add(1)
	if err := g.ob.AppendNow(context.WithoutCancel(ctx), payload.Event, []payload.Record{r}); err != nil {
		g.refuse(payload.Event, 1, err)
		return err
	}
	return nil
}

// pinOpener chooses where GPIO lines come from: the caller's opener, the
// simulator of gpio.simulator (a bench test, said loudly), or the board.
func (g *Gateway) pinOpener(open func(string) (periphgpio.PinIO, error)) func(string) (periphgpio.PinIO, error) {
	switch {
	case open != nil:
		return open
	case g.cfg.GPIO.Simulator != "":
		g.log.Warn("GPIO IS SIMULATED: every GPIO line comes from the simulator at gpio.simulator, none from the board; for bench tests only",
			"gpio_simulator", g.cfg.GPIO.Simulator)
		sim := simgpio.Dial(g.cfg.GPIO.Simulator, simgpio.ClientOptions{Logger: g.log.With("part", "gpio")})
		g.gpioSim = sim
		return sim.Open
	}
	return gpio.Open
}

// run decides on the door's card reads and watches its contact, exit
// button and Wiegand reader until ctx ends.
func (de *doorEntry) run(ctx context.Context, g *Gateway) {
	decided := make(chan struct{})
	go func() {
		defer close(decided)
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-de.reads:
				de.door.Present(ctx, r)
			}
		}
	}()
	// The door's own loop ends only after the last decision: it then waits
	// for the decisions' reader feedback.
	doorCtx, stopDoor := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDoor()
	go func() { <-decided; stopDoor() }()
	done := make(chan struct{})
	if de.wiegand != nil {
		go func() {
			defer close(done)
			reader := de.cfg.Name + "-wiegand"
			handle := func(c wiegand.Card, at time.Time) {
				if r, ok := c.CardRead(reader, at); ok { // keypad keys are not part of the decision
					de.present(ctx, r)
				}
			}
			if err := de.wiegand.Run(ctx, handle); err != nil && ctx.Err() == nil {
				g.log.Error("wiegand reader stopped", "door", de.cfg.Name, "err", err)
			}
		}()
	} else {
		close(done)
	}
	if err := de.door.Run(doorCtx, de.contact, de.exit); err != nil && ctx.Err() == nil {
		g.log.Error("door stopped", "door", de.cfg.Name, "err", err)
	}
	<-done
	<-decided
}

func (de *doorEntry) close() {
	if de.door != nil {
		de.door.Close()
	}
	if de.strike != nil {
		de.strike.Close()
	}
}

// presentCards hands the card reads of a card-reading device
// (drivers.CardSource) to their doors; a read without a time is taken at
// observed.
func (g *Gateway) presentCards(ctx context.Context, drv drivers.Device, observed time.Time) {
	cs, ok := drv.(drivers.CardSource)
	if !ok {
		return
	}
	for _, c := range cs.TakeCards() {
		de := g.byReader[c.Reader]
		if de == nil {
			g.presentLane(ctx, c, observed)
			continue
		}
		if c.Time.IsZero() {
			c.Time = observed
		}
		de.present(ctx, c)
	}
}

// present hands a typed card read, from an OSDP or a Wiegand reader, to
// the door's goroutine without waiting for the decision. A door that has
// maxQueuedReads reads waiting is stuck; the read is dropped and logged.
func (de *doorEntry) present(ctx context.Context, c drivers.CardRead) {
	r := access.Read{Reader: c.Reader, Card: access.CardID(c.Data, c.Bits), Time: c.Time}
	select {
	case de.reads <- r:
	case <-ctx.Done():
	default:
		de.log.Error("card read dropped: the door has too many reads waiting for a decision", "reader", c.Reader, "waiting", len(de.reads))
	}
}

// idlePoller is a device that is also polled in its line's idle time
// (osdp.Device): IdleGap is the shortest time between two such polls (0:
// not at all); PollEvents polls for events alone, without a reading.
type idlePoller interface {
	IdleGap() time.Duration
	PollEvents(ctx context.Context) error
}

// sweep is the idle-time polling of one line's card readers.
type sweep struct {
	bus  *bus.Bus
	devs []*device
}

// sweeps groups the devices that want their line's idle time by bus.
func (g *Gateway) sweeps() []*sweep {
	var out []*sweep
	byBus := map[string]*sweep{}
	for _, d := range g.devices {
		ip, ok := d.drv.(idlePoller)
		if !ok || ip.IdleGap() <= 0 || d.spec.Bus == "" {
			continue
		}
		s := byBus[d.spec.Bus]
		if s == nil {
			for _, be := range g.buses {
				if be.b.Name() == d.spec.Bus {
					s = &sweep{bus: be.b}
				}
			}
			if s == nil {
				continue
			}
			byBus[d.spec.Bus] = s
			out = append(out, s)
		}
		s.devs = append(s.devs, d)
	}
	return out
}

// run polls the line's readers round-robin in the line's idle time until
// ctx ends, handing what they report on as a scheduled poll does. A reader
// whose poll fails gives up its idle-time turns for its poll interval (at
// most a second); its scheduled polls report the failure.
func (s *sweep) run(ctx context.Context, g *Gateway) {
	ps := make([]bus.Poller, 0, len(s.devs))
	for _, d := range s.devs {
		ip := d.drv.(idlePoller)
		ps = append(ps, bus.Poller{Name: d.spec.ID, Gap: ip.IdleGap(), Retry: min(d.poll, time.Second), Poll: func(ctx context.Context) error {
			err := ip.PollEvents(ctx)
			g.takeEvents(ctx, d, g.now())
			return err
		}})
	}
	if err := s.bus.Sweep(ctx, ps); err != nil {
		g.log.Error("idle-time polling stopped", "bus", s.bus.Name(), "err", err)
	}
}

// accessHandlers adds credentials.sync to the command executor when the
// gateway has doors.
func (g *Gateway) accessHandlers() map[string]command.Handler {
	if g.store == nil {
		return nil
	}
	return map[string]command.Handler{access.SyncCommand: g.store.Handler()}
}
