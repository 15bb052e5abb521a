package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/gateway/lane"
	"github.com/luling-edge/luling/gateway/status"
	"github.com/luling-edge/luling/payload"
)

// This file wires the lanes and lots of the config (package gateway/lane)
// into the runtime: their GPIO lines, barriers, readers, signs, commands
// and durable events.

// laneSet is the gateway's lanes and lots.
type laneSet struct {
	lots     []*lane.Lot
	lanes    []*laneEntry
	byReader map[string]*laneEntry
	signs    []*lane.Sign
}

// laneEntry is one lane with the lines it owns.
type laneEntry struct {
	cfg     config.Lane
	l       *lane.Lane
	in      lane.Inputs
	outs    []*gpio.Output
	wiegand *wiegand.Reader
}

// newLanes builds the lots and lanes of the config. Lanes decide
// credentials with the doors' store, opened here when there are no doors.
func (g *Gateway) newLanes(openPin func(string) (periphgpio.PinIO, error)) (*laneSet, error) {
	if len(g.cfg.Lanes) == 0 && len(g.cfg.Lots) == 0 {
		return nil, nil
	}
	state := filepath.Join(filepath.Dir(filepath.Clean(g.cfg.Outbox.Path)), "lanes")
	if g.store == nil && len(g.cfg.Lanes) > 0 {
		store, err := access.OpenStore(filepath.Join(filepath.Dir(filepath.Clean(g.cfg.Outbox.Path)), "access"),
			access.StoreOptions{Logger: g.log.With("part", "access")})
		if err != nil {
			return nil, fmt.Errorf("gateway: credentials: %w", err)
		}
		g.store = store
	}
	writers := map[string]drivers.Writer{}
	feedback := map[string]access.Feedback{}
	for _, d := range g.devices {
		if w, ok := d.drv.(drivers.Writer); ok {
			writers[d.spec.ID] = w
		}
		if f, ok := d.drv.(access.Feedback); ok {
			feedback[d.spec.ID] = f
		}
	}
	ls := &laneSet{byReader: map[string]*laneEntry{}}
	fail := func(err error) (*laneSet, error) {
		ls.close()
		return nil, err
	}
	lots := map[string]*lane.Lot{}
	for _, lc := range g.cfg.Lots {
		lot, err := lane.OpenLot(state, lc.Name, lc.Capacity, g.log.With("part", "lanes"))
		if err != nil {
			return fail(fmt.Errorf("gateway: %w", err))
		}
		lots[lc.Name] = lot
		ls.lots = append(ls.lots, lot)
		if lc.Sign != nil {
			w := writers[lc.Sign.Device]
			if w == nil {
				return fail(fmt.Errorf("gateway: lot %s: sign device %s has no writable points", lc.Name, lc.Sign.Device))
			}
			s := &lane.Sign{Device: lc.Sign.Device, Point: lc.Sign.Point, W: w, Clock: g.clock, Logger: g.log.With("lot", lc.Name)}
			s.Watch(lot)
			ls.signs = append(ls.signs, s)
		}
	}
	for _, lc := range g.cfg.Lanes {
		le := &laneEntry{cfg: lc}
		ls.lanes = append(ls.lanes, le)
		if err := le.open(g, openPin, writers, feedback, lots[lc.Lot]); err != nil {
			return fail(fmt.Errorf("gateway: lane %s: %w", lc.Name, err))
		}
		for _, r := range lc.Readers {
			ls.byReader[r] = le
		}
	}
	return ls, nil
}

// open makes the lane's lines, barrier and logic.
func (le *laneEntry) open(g *Gateway, openPin func(string) (periphgpio.PinIO, error), writers map[string]drivers.Writer,
	feedback map[string]access.Feedback, lot *lane.Lot) error {
	lc := le.cfg
	output := func(what string, p *config.Pin) (*gpio.Output, error) {
		if p == nil {
			return nil, nil
		}
		pin, err := openPin(p.Name)
		if err != nil {
			return nil, fmt.Errorf("barrier %s: %w", what, err)
		}
		o, err := gpio.NewOutput(pin, gpio.OutputConfig{Name: lc.Name + "-" + what, ActiveLow: p.ActiveLow})
		if err == nil {
			le.outs = append(le.outs, o)
		}
		return o, err
	}
	input := func(what string, p *config.Pin) (*gpio.Input, error) {
		if p == nil {
			return nil, nil
		}
		pin, err := openPin(p.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return gpio.NewInput(pin, gpio.InputConfig{Name: lc.Name + "-" + what, ActiveLow: p.ActiveLow, Debounce: lc.Debounce})
	}
	var barrier lane.Barrier
	if c := lc.Barrier.Coil; c != nil {
		w := writers[c.Device]
		if w == nil {
			return fmt.Errorf("barrier coil: device %s has no writable points", c.Device)
		}
		barrier = &lane.Coil{Device: c.Device, Point: c.Point, W: w}
	} else {
		open, err := output("open", lc.Barrier.Open)
		if err != nil {
			return err
		}
		cls, err := output("close", lc.Barrier.Close)
		if err != nil {
			return err
		}
		barrier = &lane.Outputs{Open: open, Close: cls, Pulse: lc.Barrier.Pulse}
	}
	var err error
	for _, in := range []struct {
		what string
		pin  *config.Pin
		dst  **gpio.Input
	}{{"arming", &lc.Arming, &le.in.Arming}, {"safety", &lc.Safety, &le.in.Safety},
		{"opened", lc.Barrier.Opened, &le.in.Opened}, {"closed", lc.Barrier.Closed, &le.in.Closed}} {
		if *in.dst, err = input(in.what, in.pin); err != nil {
			return err
		}
	}
	if w := lc.Wiegand; w != nil {
		var d [2]periphgpio.PinIO
		for i, name := range []string{w.D0, w.D1} {
			if d[i], err = openPin(name); err != nil {
				return fmt.Errorf("wiegand d%d: %w", i, err)
			}
		}
		if le.wiegand, err = wiegand.New(wiegand.Config{Name: lc.Name + "-wiegand", D0: d[0], D1: d[1], Logger: g.log.With("lane", lc.Name)}); err != nil {
			return err
		}
	}
	fb := map[string]access.Feedback{}
	for _, r := range lc.Readers {
		if f := feedback[r]; f != nil {
			fb[r] = f
		}
	}
	le.l, err = lane.New(lane.Config{Name: lc.Name, Direction: lc.Direction, Lot: lot, Store: g.store, Feedback: fb,
		Barrier: barrier, PositionOpened: lc.Barrier.Opened != nil, PositionClosed: lc.Barrier.Closed != nil,
		Visitors: lc.Visitors, OpenTime: lc.OpenTime, MotorTime: lc.Barrier.MotorTime,
		Emit: g.emitDurable, Clock: g.clock, Logger: g.log})
	return err
}

// emitDurable records events and returns once they are in the outbox on
// disk: a lane acts on a decision only after it is recorded. Rules see
// the events like any other.
func (g *Gateway) emitDurable(ctx context.Context, recs []payload.Record) error {
	g.events.Add(uint64(len(recs)))
	g.rules.ObserveEvents(recs)
	err := g.ob.Append(context.WithoutCancel(ctx), payload.Event, recs)
	if err != nil {
		g.refuse(payload.Event, len(recs), err)
	}
	return err
}

// run runs the lanes and signs until ctx ends.
func (ls *laneSet) run(ctx context.Context, g *Gateway) {
	if ls == nil {
		return
	}
	var wg sync.WaitGroup
	for _, s := range ls.signs {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	for _, le := range ls.lanes {
		if le.wiegand != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reader := le.cfg.Name + "-wiegand"
				err := le.wiegand.Run(ctx, func(c wiegand.Card, at time.Time) {
					if r, ok := c.CardRead(reader, at); ok {
						le.present(ctx, r)
					}
				})
				if err != nil && ctx.Err() == nil {
					g.log.Error("wiegand reader stopped", "lane", le.cfg.Name, "err", err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := le.l.Run(ctx, le.in); err != nil && ctx.Err() == nil {
				g.log.Error("lane stopped", "lane", le.cfg.Name, "err", err)
			}
		}()
	}
	wg.Wait()
}

func (le *laneEntry) present(ctx context.Context, c drivers.CardRead) {
	le.l.Present(ctx, lane.Read{Reader: c.Reader, Card: access.CardID(c.Data, c.Bits), Time: c.Time})
}

// presentLane hands a card read of a lane's reader to the lane; a read
// without a time is taken at observed.
func (g *Gateway) presentLane(ctx context.Context, c drivers.CardRead, observed time.Time) {
	if g.lanes == nil || g.lanes.byReader[c.Reader] == nil {
		return
	}
	if c.Time.IsZero() {
		c.Time = observed
	}
	g.lanes.byReader[c.Reader].present(ctx, c)
}

// laneHandlers adds lane.open and lot.count.set to h when the gateway has
// lanes or lots.
func (g *Gateway) laneHandlers(h map[string]command.Handler) map[string]command.Handler {
	if g.lanes == nil {
		return h
	}
	var lanes []*lane.Lane
	for _, le := range g.lanes.lanes {
		lanes = append(lanes, le.l)
	}
	if h == nil {
		h = map[string]command.Handler{}
	}
	for name, f := range lane.Handlers(lanes, g.lanes.lots, g.now, g.emitDurable) {
		h[name] = f
	}
	return h
}

// snapshot adds the lanes and lots to the status snapshot.
func (ls *laneSet) snapshot(s *status.Snapshot) {
	if ls == nil {
		return
	}
	for _, le := range ls.lanes {
		st := le.l.Status()
		s.Lanes = append(s.Lanes, status.Lane{Name: le.cfg.Name, Lot: le.cfg.Lot, Direction: le.cfg.Direction, State: st.State,
			Arming: st.Arming, Safety: st.Safety, Pending: st.Pending, Granted: st.Stats.Granted, Denied: st.Stats.Denied,
			Passed: st.Stats.Passed, Tailgates: st.Stats.Tailgates, Timeouts: st.Stats.Timeouts, Faults: st.Stats.Faults})
	}
	for _, lot := range ls.lots {
		st := lot.State()
		s.Lots = append(s.Lots, status.Lot{Name: st.Lot, Capacity: st.Capacity, Occupied: st.Occupied, Free: st.Free})
	}
}

// problems lists the lanes whose barrier is in fault, for the status page.
func (ls *laneSet) problems() []string {
	if ls == nil {
		return nil
	}
	var out []string
	for _, le := range ls.lanes {
		if st := le.l.Status(); st.State == lane.StateFault {
			out = append(out, fmt.Sprintf("lane %s: the barrier did not reach its position (%d faults); see the lane events", le.cfg.Name, st.Stats.Faults))
		}
	}
	return out
}

// close sets the barrier outputs inactive and waits for reader feedback.
func (ls *laneSet) close() {
	if ls == nil {
		return
	}
	for _, le := range ls.lanes {
		if le.l != nil {
			le.l.Close()
		}
		for _, o := range le.outs {
			o.Close()
		}
	}
}
