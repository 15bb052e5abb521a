package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/access"
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
}

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
		de := &doorEntry{cfg: dc}
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
			Emit: func(r payload.Record) { g.Emit(context.Background(), payload.Event, []payload.Record{r}) }})
		if err != nil {
			return fail(fmt.Errorf("gateway: door %s: %w", dc.Name, err))
		}
	}
	return store, doors, byReader, nil
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

// run watches the door's contact, exit button and Wiegand reader until ctx ends.
func (de *doorEntry) run(ctx context.Context, g *Gateway) {
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
	if err := de.door.Run(ctx, de.contact, de.exit); err != nil && ctx.Err() == nil {
		g.log.Error("door stopped", "door", de.cfg.Name, "err", err)
	}
	<-done
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

// present hands a typed card read, from an OSDP or a Wiegand reader, to the door.
func (de *doorEntry) present(ctx context.Context, c drivers.CardRead) {
	de.door.Present(ctx, access.Read{Reader: c.Reader, Card: access.CardID(c.Data, c.Bits), Time: c.Time})
}

// accessHandlers adds credentials.sync to the command executor when the
// gateway has doors.
func (g *Gateway) accessHandlers() map[string]command.Handler {
	if g.store == nil {
		return nil
	}
	return map[string]command.Handler{access.SyncCommand: g.store.Handler()}
}
