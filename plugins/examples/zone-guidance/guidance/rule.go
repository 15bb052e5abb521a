// Package guidance is a site rule that keeps the guidance sign of every
// parking zone showing the zone's free bays. It is the example rule plugin
// of the Luling plugin SDK (see docs/plugins.md); the program in the parent
// folder serves it.
//
// # Counting
//
// The rule reads parking_bay records (tags lot, zone, bay, device; field
// occupied) and, for every zone in its config, keeps the set of bays that
// are occupied. A bay is its lot and bay tags, or its device tag when the
// bay tag is missing; the last record of a bay decides whether it is
// occupied and in which zone, so a bay that moves to another configured
// zone leaves the first one. Records of zones not in the config, of
// another lot than the zone's lot filter, of other measurements or
// without a boolean occupied field are ignored.
//
// A zone's free count is its configured capacity minus its occupied bays,
// never below 0 (more occupied bays than capacity is logged once: the
// capacity in the config is too small).
//
// # Actions
//
// After applying a call's records, the rule writes the free count to the
// point ("free" by default) of the zone's sign, once per zone and call,
// when the count differs from what it wrote last, or when it has not
// written the zone yet. With every write it emits a zone_guidance record
// (tag zone; fields free, occupied, capacity) so that dashboards see what
// the sign shows. A zone that fills up raises a warning alert, one that has
// free bays again an info alert.
//
// Because the rule decides locally, on the gateway, the signs stay right
// while the uplink is down.
//
// # Restarts
//
// After the plugin (re)starts, the gateway's first call is marked Resumed
// and carries the last record of every series: the rule rebuilds its
// counts from empty and writes every zone those records mention, changed
// or not, since it cannot know what the signs show. It raises no alerts
// then: nothing changed in the lot. A zone with no record at all is not
// written until its first record arrives, so that a restart never shows a
// guessed count.
package guidance

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/sdk"
)

// Measurements the rule reads and emits.
const (
	BayMeasurement  = "parking_bay"
	ZoneMeasurement = "zone_guidance"
)

// Config limits and defaults.
const (
	MaxCapacity  = 10000
	DefaultPoint = "free"
)

// Config is the rule's plugin config (the `config` object under the rule's
// plugin options).
type Config struct {
	// Zones are the zones to guide, by the value of their zone tag.
	Zones map[string]Zone `json:"zones"`
	// Point is the signs' writable point that shows the count; default
	// "free".
	Point string `json:"point"`
	// FullAlert raises an alert when a zone fills up and when it has free
	// bays again; default true.
	FullAlert bool `json:"full_alert"`
}

// Zone is one zone's settings.
type Zone struct {
	Sign     string `json:"sign"`     // device id of the zone's guidance display
	Capacity int    `json:"capacity"` // bays in the zone, 1..MaxCapacity
	Lot      string `json:"lot"`      // count only records with this lot tag; "" for any
}

// Rule is the zone guidance rule.
type Rule struct {
	mu    sync.Mutex // guards the rest: the SDK calls one at a time, a test may not
	cfg   Config
	log   *slog.Logger
	zones map[string]*zone // by name
	order []*zone          // by name, for a stable order of actions
	bays  map[bay]*zone    // occupied bays and the zone that counts them
}

var _ sdk.Rule = (*Rule)(nil)

// zone is a configured zone and its state.
type zone struct {
	name     string
	cfg      Zone
	occupied int  // bays in Rule.bays that point here
	written  bool // shown holds what was written to the sign
	shown    int
	warned   bool // logged that capacity is too small
}

// free is the count the sign should show.
func (z *zone) free() int { return max(z.cfg.Capacity-z.occupied, 0) }

// bay identifies a bay: lot and bay tags, or the device tag when there is
// no bay tag.
type bay struct{ lot, bay, device string }

// New returns an unconfigured rule.
func New() *Rule { return &Rule{} }

// Describe says what the rule is.
func (r *Rule) Describe() sdk.RuleDescription {
	return sdk.RuleDescription{
		Name:        "zone-guidance",
		Description: "shows each parking zone's free bays on its guidance sign",
		Version:     "1.0.0",
	}
}

// Configure checks the config and starts from empty state.
func (r *Rule) Configure(_ context.Context, env sdk.RuleEnv) error {
	cfg := Config{Point: DefaultPoint, FullAlert: true}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if len(cfg.Zones) == 0 {
		return fmt.Errorf("config: key \"zones\": no zones; want at least one zone with its sign and capacity: %w", sdk.ErrInvalid)
	}
	if cfg.Point == "" {
		return fmt.Errorf("config: key \"point\": empty; want the signs' writable point (default %q): %w", DefaultPoint, sdk.ErrInvalid)
	}
	names := make([]string, 0, len(cfg.Zones))
	for name := range cfg.Zones {
		names = append(names, name)
	}
	slices.Sort(names)
	signs := make(map[string]string, len(names)) // sign → zone
	for _, name := range names {
		z := cfg.Zones[name]
		if name == "" {
			return fmt.Errorf("config: key \"zones\": a zone with an empty name; want the zone tag of its bays: %w", sdk.ErrInvalid)
		}
		key := "zones." + name
		if z.Sign == "" {
			return fmt.Errorf("config: key %q: missing; want the device id of the zone's guidance display: %w", key+".sign", sdk.ErrInvalid)
		}
		if other, ok := signs[z.Sign]; ok {
			return fmt.Errorf("config: key %q: sign %q already shows zone %q; a sign shows one zone: %w", key+".sign", z.Sign, other, sdk.ErrInvalid)
		}
		signs[z.Sign] = name
		if z.Capacity < 1 || z.Capacity > MaxCapacity {
			return fmt.Errorf("config: key %q: %d out of range 1..%d: %w", key+".capacity", z.Capacity, MaxCapacity, sdk.ErrInvalid)
		}
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg, r.log = cfg, log
	r.zones = make(map[string]*zone, len(names))
	r.order = make([]*zone, 0, len(names))
	for _, name := range names {
		z := &zone{name: name, cfg: cfg.Zones[name]}
		r.zones[name] = z
		r.order = append(r.order, z)
	}
	r.bays = map[bay]*zone{}
	return nil
}

// Evaluate applies the records and returns the writes, emits and alerts
// for the zones whose count changed (every zone mentioned, on a resume).
func (r *Rule) Evaluate(_ context.Context, in sdk.Input) ([]sdk.Action, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in.Resumed {
		clear(r.bays)
		for _, z := range r.order {
			*z = zone{name: z.name, cfg: z.cfg}
		}
	}
	touched := make(map[*zone]bool)
	for i := range in.Records {
		r.apply(&in.Records[i], touched)
	}
	var acts []sdk.Action
	for _, z := range r.order {
		if !touched[z] {
			continue
		}
		r.checkCapacity(z)
		free := z.free()
		if z.written && z.shown == free {
			continue
		}
		prev := z.cfg.Capacity // before the first write, the zone was empty
		if z.written {
			prev = z.shown
		}
		z.written, z.shown = true, free
		acts = append(acts,
			sdk.Write(z.cfg.Sign, r.cfg.Point, payload.Int(int64(free))),
			sdk.Emit(payload.Record{
				Measurement: ZoneMeasurement,
				Tags:        map[string]string{"zone": z.name},
				Fields: map[string]payload.Value{
					"free":     payload.Int(int64(free)),
					"occupied": payload.Int(int64(z.occupied)),
					"capacity": payload.Int(int64(z.cfg.Capacity)),
				},
			}))
		if !r.cfg.FullAlert || in.Resumed {
			continue
		}
		switch {
		case prev > 0 && free == 0:
			acts = append(acts, sdk.Alert("warning", fmt.Sprintf("zone %s is full (%d bays)", z.name, z.cfg.Capacity), z.cfg.Sign))
		case prev == 0 && free > 0:
			acts = append(acts, sdk.Alert("info", fmt.Sprintf("zone %s has free bays again", z.name), z.cfg.Sign))
		}
	}
	return acts, nil
}

// apply counts one record and marks the zones it changed or mentioned.
func (r *Rule) apply(rec *payload.Record, touched map[*zone]bool) {
	if rec.Measurement != BayMeasurement {
		return
	}
	z := r.zones[rec.Tag("zone")]
	if z == nil || (z.cfg.Lot != "" && rec.Tag("lot") != z.cfg.Lot) {
		return
	}
	v, ok := rec.Fields["occupied"]
	if !ok || v.Type() != payload.TypeBool {
		return
	}
	k := bay{lot: rec.Tag("lot"), bay: rec.Tag("bay")}
	if k.bay == "" {
		k = bay{device: rec.Tag("device")}
		if k.device == "" {
			return
		}
	}
	touched[z] = true
	prev := r.bays[k]
	if prev != nil {
		prev.occupied--
		touched[prev] = true
		delete(r.bays, k)
	}
	if v.Bool() {
		r.bays[k] = z
		z.occupied++
	}
}

// checkCapacity logs once per zone that it has more occupied bays than
// its capacity.
func (r *Rule) checkCapacity(z *zone) {
	if z.occupied <= z.cfg.Capacity || z.warned {
		return
	}
	z.warned = true
	r.log.Warn("zone guidance: more occupied bays than the zone's capacity; the sign shows 0 free: raise the capacity in the rule's config",
		"zone", z.name, "capacity", z.cfg.Capacity, "occupied", z.occupied)
}
