package sunspec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/payload"
)

// DriverName is the name the driver registers under (a device's `driver`).
const DriverName = "sunspec"

// Measurements and event names the driver writes.
const (
	MeasurementPV    = "pv"
	MeasurementMPPT  = "pv_mppt"
	MeasurementFault = "fault"
	MeasurementAlert = "alert"
	// AlertRule is the rule tag of the alerts the driver raises.
	AlertRule = "pv_fault"
	// CodeState is the fault code of an inverter whose operating state is FAULT.
	CodeState = "operating_state"
	// CodeEnergyReset is the fault code of a lifetime energy counter that
	// went backwards.
	CodeEnergyReset = "energy_counter_reset"
)

// OptionBase is the Spec.Options key that pins the map's base address
// (40000, 0, 50000 or another), instead of trying the three in turn.
const OptionBase = "base"

// Errors that callers of Write branch on.
var (
	ErrUnknownPoint = errors.New("no such point on the device")
	ErrReadOnly     = errors.New("point is read-only")
	ErrOutOfRange   = errors.New("value out of range")
)

func init() {
	drivers.Register(drivers.Info{
		Name:        DriverName,
		Description: "SunSpec inverter or MPPT controller over Modbus RTU (models 1, 101-103, 111-113, 120-123, 160)",
		Measurement: MeasurementPV,
		New: func(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
			return New(spec, env)
		},
		Bus:     &drivers.Units{Min: 1, Max: modbus.MaxUnit},
		Options: Options,
		Example: `- id: inv-1
  driver: sunspec
  bus: rs485-2
  unit: 1
  options: {base: 40000}`,
	})
}

// Options are the keys of a sunspec device's options.
var Options = schema.Schema{
	{Key: OptionBase, Kind: schema.Int, Min: 0, Max: 0xFFFF - 70,
		Doc: "the register where the SunSpec map starts (its \"SunS\" marker); default: try 40000, 0 and 50000"},
}

// inverterIDs are the inverter models the driver reads, preferred in this order.
var inverterIDs = [...]uint16{101, 102, 103, 111, 112, 113}

// staticIDs are models read once at discovery (and after a write to them).
var staticIDs = map[uint16]bool{1: true, 120: true, 121: true}

// Device is one SunSpec unit on a bus. It implements drivers.Device,
// drivers.EventSource and drivers.Writer. It discovers the map at its first
// poll and again after a failed one; Poll, Write and TakeEvents may be
// called from several goroutines.
type Device struct {
	id     string
	client *modbus.Client
	absent *modbus.Absence // a Modbus gateway in front says the unit is not there
	bases  []uint16
	tags   map[string]string
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	info   *DeviceInfo // nil until discovered
	live   []ModelInfo // models read every poll
	static map[uint16]*Block

	// what the last polls saw, kept across rediscovery
	lastWH    float64
	haveWH    bool
	lastSt    uint64
	haveSt    bool
	lastBits  map[string]uint64 // event bitfields by source ("Evt1", "module 2")
	events    []payload.Record
	maxEvents int
}

var (
	_ drivers.Device      = (*Device)(nil)
	_ drivers.EventSource = (*Device)(nil)
	_ drivers.Writer      = (*Device)(nil)
	_ drivers.Reporter    = (*Device)(nil)
)

// New builds a device from its spec: Unit 1..247 on Env.Bus, optional
// Options["base"]. It makes no I/O.
func New(spec drivers.Spec, env drivers.Env) (*Device, error) {
	if spec.ID == "" {
		return nil, errors.New("sunspec: device without an id")
	}
	if spec.Unit < 1 || spec.Unit > modbus.MaxUnit {
		return nil, fmt.Errorf("sunspec: device %s: unit %d, want 1..%d", spec.ID, spec.Unit, modbus.MaxUnit)
	}
	if env.Bus == nil {
		return nil, fmt.Errorf("sunspec: device %s: no bus (set `bus` to a serial bus)", spec.ID)
	}
	bases := Bases[:]
	if err := drivers.CheckOptions("sunspec", spec, Options); err != nil {
		return nil, err
	}
	for k, v := range spec.Options {
		b, ok := intOption(v)
		if !ok || b < 0 || b > 0xFFFF-70 {
			return nil, fmt.Errorf("sunspec: device %s: option %s is %v, want a register address such as 40000, 0 or 50000", spec.ID, k, v)
		}
		bases = []uint16{uint16(b)}
	}
	logger := env.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := env.Now
	if now == nil {
		now = time.Now
	}
	tags := make(map[string]string, len(spec.Tags))
	for k, v := range spec.Tags {
		tags[k] = v
	}
	name := spec.ID
	if spec.Bus != "" {
		name += " on " + spec.Bus
	}
	log := logger.With("device", spec.ID, "unit", spec.Unit)
	return &Device{
		id:        spec.ID,
		client:    modbus.NewClient(env.Bus, byte(spec.Unit), name),
		absent:    modbus.NewAbsence("sunspec: "+spec.ID, byte(spec.Unit), now, log),
		bases:     bases,
		tags:      tags,
		log:       log,
		now:       now,
		maxEvents: 256,
	}, nil
}

func intOption(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case uint64:
		return int(x), x <= math.MaxInt32
	case float64:
		return int(x), x == math.Trunc(x)
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	return 0, false
}

// Info returns what discovery found, nil before the first successful poll.
func (d *Device) Info() *DeviceInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info
}

// ensure discovers the map when it is not known. Caller holds d.mu.
func (d *Device) ensure(ctx context.Context) error {
	if d.info != nil {
		return nil
	}
	info, err := discover(ctx, d.client, d.bases)
	if err != nil {
		return fmt.Errorf("sunspec: %s: %w", d.id, err)
	}
	var live, static []ModelInfo
	inverter := false
	for _, m := range info.Models {
		switch {
		case staticIDs[m.ID]:
			static = append(static, m)
		case m.ID == 160 || m.ID == 123:
			live = append(live, m)
		case isInverter(m.ID) && !inverter:
			inverter = true
			live = append(live, m)
		}
	}
	if !inverter {
		return fmt.Errorf("sunspec: %s: no inverter model (101-103, 111-113) in the chain %s", d.id, info.IDs())
	}
	blocks, err := readModels(ctx, d.client, static)
	if err != nil {
		return fmt.Errorf("sunspec: %s: %w", d.id, err)
	}
	d.static = make(map[uint16]*Block, len(blocks))
	for _, b := range blocks {
		if _, dup := d.static[b.ID]; !dup {
			d.static[b.ID] = b
		}
	}
	if b := d.static[1]; b != nil {
		info.setIdentity(b)
	}
	d.info, d.live = info, live
	d.log.Info("sunspec map discovered", "base", info.Base, "models", info.IDs(),
		"manufacturer", info.Manufacturer, "model", info.Model, "serial", info.Serial)
	return nil
}

func isInverter(id uint16) bool {
	for _, i := range inverterIDs {
		if i == id {
			return true
		}
	}
	return false
}

// Poll reads the live models and returns one pv record and one pv_mppt
// record per module. A failed poll makes the next one discover again. An
// inverter that the Modbus gateway in front of it reports absent
// (exception 0x0A or 0x0B) is skipped for a back-off (modbus.Absence).
func (d *Device) Poll(ctx context.Context) ([]payload.Record, error) {
	if err := d.absent.Skip(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	recs, err := d.poll(ctx)
	return recs, d.absent.Settle(err)
}

// Report is the device's state for the gateway's status page: state "ok"
// or "absent" (with the cause and the next try), and noise_bytes, the line
// noise skipped before replies.
func (d *Device) Report() map[string]any {
	r := map[string]any{"noise_bytes": d.client.NoiseBytes()}
	d.absent.Report(r)
	return r
}

func (d *Device) poll(ctx context.Context) ([]payload.Record, error) {
	if err := d.ensure(ctx); err != nil {
		return nil, err
	}
	blocks, err := readModels(ctx, d.client, d.live)
	if err != nil {
		d.info = nil
		return nil, fmt.Errorf("sunspec: %s: %w", d.id, err)
	}
	return d.decode(blocks), nil
}

// decode turns the live blocks into records and events. Caller holds d.mu.
func (d *Device) decode(blocks []*Block) []payload.Record {
	now := d.now()
	var inv, mppt, ctl *Block
	for _, b := range blocks {
		switch {
		case isInverter(b.ID):
			inv = b
		case b.ID == 160:
			mppt = b
		case b.ID == 123:
			ctl = b
		}
	}
	pv := payload.Record{Measurement: MeasurementPV, Tags: d.recordTags("model", strconv.Itoa(int(inv.ID))), Fields: map[string]payload.Value{}}
	set := func(field string, b *Block, point string) bool {
		if b == nil {
			return false
		}
		v, err := b.Value(point)
		if err != nil || math.IsInf(v, 0) {
			return false
		}
		pv.Fields[field] = payload.Float(v)
		return true
	}
	set("ac_power_w", inv, "W")
	set("dc_voltage_v", inv, "DCV")
	set("dc_current_a", inv, "DCA")
	set("dc_power_w", inv, "DCW")
	set("ac_frequency_hz", inv, "Hz")
	for _, p := range []string{"TmpCab", "TmpSnk", "TmpTrns", "TmpOt"} {
		if set("temp_c", inv, p) {
			break
		}
	}
	if wh, err := inv.Value("WH"); err == nil && !math.IsInf(wh, 0) {
		if d.haveWH && wh < d.lastWH {
			d.event(now, d.fault(CodeEnergyReset, "", "active", fmt.Sprintf("lifetime energy went back from %s Wh to %s Wh; the reading is left out", decimal(d.lastWH), decimal(wh))))
		} else {
			pv.Fields["ac_energy_wh"] = payload.Float(wh)
		}
		d.lastWH, d.haveWH = wh, true
	}
	if st, err := inv.Uint("St"); err == nil {
		p, _ := inv.Def.Point("St")
		pv.Fields["state"] = payload.String(stateName(p, st))
		d.stateEvents(now, p, st)
	}
	if evt, err := inv.Uint("Evt1"); err == nil {
		p, _ := inv.Def.Point("Evt1")
		d.bitEvents(now, "Evt1", "", p, evt)
	}
	set("rated_power_w", d.static[120], "WRtg")
	set("max_power_w", d.static[121], "WMax")
	if set("power_limit_pct", ctl, "WMaxLimPct") {
		if ena, err := ctl.Uint("WMaxLim_Ena"); err == nil {
			pv.Fields["power_limit_enabled"] = payload.Bool(ena == 1)
		}
	}
	out := []payload.Record{pv}
	if mppt != nil {
		for i := range mppt.Repeats() {
			module := strconv.Itoa(i + 1)
			if id, err := mppt.GroupUint(i, "ID"); err == nil {
				module = strconv.FormatUint(id, 10)
			}
			r := payload.Record{Measurement: MeasurementMPPT, Tags: d.recordTags("module", module), Fields: map[string]payload.Value{}}
			for field, point := range map[string]string{"dc_voltage_v": "DCV", "dc_current_a": "DCA", "dc_power_w": "DCW"} {
				if v, err := mppt.GroupValue(i, point); err == nil {
					r.Fields[field] = payload.Float(v)
				}
			}
			if len(r.Fields) > 0 {
				out = append(out, r)
			}
			if evt, err := mppt.GroupUint(i, "DCEvt"); err == nil {
				p, _ := mppt.Def.Group.Point("DCEvt")
				d.bitEvents(now, "DCEvt", module, p, evt)
			}
		}
	}
	return out
}

// decimal formats v without an exponent ("2000000", "234.5").
func decimal(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// stateName is the lower-case symbol of an operating state ("mppt").
func stateName(p *Point, st uint64) string {
	if s := p.Symbol(int64(st)); s != "" {
		return strings.ToLower(s)
	}
	return fmt.Sprintf("state_%d", st)
}

// faultState is the St value of an inverter in FAULT.
const faultState = 7

func (d *Device) stateEvents(now time.Time, p *Point, st uint64) {
	was, had := d.lastSt, d.haveSt
	d.lastSt, d.haveSt = st, true
	switch {
	case st == faultState && (!had || was != faultState):
		msg := fmt.Sprintf("inverter %s is in operating state FAULT", d.id)
		if had {
			msg += fmt.Sprintf(" (was %s)", strings.ToUpper(stateName(p, was)))
		}
		d.event(now, d.fault(CodeState, "", "active", msg))
		d.event(now, d.alert(CodeState, "", msg))
	case had && was == faultState && st != faultState:
		d.event(now, d.fault(CodeState, "", "cleared", fmt.Sprintf("inverter %s left FAULT, now %s", d.id, strings.ToUpper(stateName(p, st)))))
	}
}

// bitEvents raises a fault event for each bit of an event bitfield that
// came on (and an alert) or went off. source names the bitfield in
// messages and keys its last value; module is "" for the inverter's Evt1,
// else the MPPT module whose DCEvt it is. Bits already on at the first
// reading count as coming on.
func (d *Device) bitEvents(now time.Time, source, module string, p *Point, evt uint64) {
	if d.lastBits == nil {
		d.lastBits = map[string]uint64{}
	}
	key := source
	if module != "" {
		key = "module " + module
	}
	was := d.lastBits[key]
	d.lastBits[key] = evt
	on, off := evt&^was, was&^evt
	for bit := range 32 {
		mask := uint64(1) << bit
		if (on|off)&mask == 0 {
			continue
		}
		sym := p.Symbol(int64(bit))
		code := strings.ToLower(sym)
		if code == "" {
			code = fmt.Sprintf("%s_bit_%d", strings.ToLower(p.Name), bit)
			sym = fmt.Sprintf("event bit %d", bit)
		}
		who := "inverter " + d.id
		if module != "" {
			who += " module " + module
		}
		if on&mask != 0 {
			msg := fmt.Sprintf("%s reports %s (%s bit %d)", who, sym, p.Name, bit)
			d.event(now, d.fault(code, module, "active", msg))
			d.event(now, d.alert(strings.ToLower(source)+"."+code, module, msg))
		} else {
			d.event(now, d.fault(code, module, "cleared", fmt.Sprintf("%s: %s cleared (%s bit %d)", who, sym, p.Name, bit)))
		}
	}
}

func (d *Device) recordTags(k, v string) map[string]string {
	t := make(map[string]string, len(d.tags)+2)
	for tk, tv := range d.tags {
		t[tk] = tv
	}
	t["device"] = d.id
	t[k] = v
	return t
}

// fault makes a fault event; module is "" for the inverter itself.
func (d *Device) fault(code, module, state, msg string) payload.Record {
	tags := map[string]string{"device": d.id, "code": code}
	if module != "" {
		tags["module"] = module
	}
	return payload.Record{
		Measurement: MeasurementFault,
		Tags:        tags,
		Fields:      map[string]payload.Value{"state": payload.String(state), "message": payload.String(msg)},
	}
}

// alert makes an alert. Alerts of one poll share their time, so the tags
// code (the bitfield and bit, "evt1.ground_fault", or "operating_state")
// and module (an MPPT input's DCEvt) keep each its own InfluxDB point.
func (d *Device) alert(code, module, msg string) payload.Record {
	tags := map[string]string{"rule": AlertRule, "severity": "major", "device": d.id, "code": code}
	if module != "" {
		tags["module"] = module
	}
	return payload.Record{
		Measurement: MeasurementAlert,
		Tags:        tags,
		Fields:      map[string]payload.Value{"message": payload.String(msg)},
	}
}

// event queues r. The queue is bounded: when nobody takes events, the
// oldest go first and a warning says so.
func (d *Device) event(now time.Time, r payload.Record) {
	r.Time = now
	if len(d.events) >= d.maxEvents {
		d.log.Warn("event queue full, dropping the oldest event", "measurement", d.events[0].Measurement, "code", d.events[0].Tags["code"])
		d.events = append(d.events[:0], d.events[1:]...)
	}
	d.events = append(d.events, r)
	d.log.Info("sunspec event", "measurement", r.Measurement, "code", r.Tags["code"], "message", r.Fields["message"].Str())
}

// TakeEvents returns the events raised since the last call.
func (d *Device) TakeEvents() []payload.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.events
	d.events = nil
	return ev
}

// Write sets a writable point. point is a point name ("WMaxLimPct"), the
// first model of the chain that has it is written, or "model.point"
// ("123.WMaxLimPct", "controls.WMaxLimPct"). Numbers are scaled by the
// point's scale factor as the device reports it now; enum points also take
// their symbol ("ENABLED") or a bool. Unknown and read-only points, values
// out of the type's range (0..100 for percentages) and values finer than
// the point's resolution are refused before anything is sent.
func (d *Device) Write(ctx context.Context, point string, v payload.Value) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ensure(ctx); err != nil {
		return err
	}
	m, p, err := d.resolve(point)
	if err != nil {
		return fmt.Errorf("sunspec: %s: %w", d.id, err)
	}
	where := fmt.Sprintf("point %s of model %d (%s)", p.Name, m.ID, m.Name)
	if !p.Writable {
		return fmt.Errorf("sunspec: %s: %s: %w", d.id, where, ErrReadOnly)
	}
	sf := 0
	if p.SF != "" {
		def, _ := Definition(m.ID)
		sp, _ := def.Point(p.SF)
		regs, err := d.client.ReadHoldingRegisters(ctx, m.Addr+uint16(sp.Offset), 1)
		if err != nil {
			return fmt.Errorf("sunspec: %s: %s: read scale factor: %w", d.id, where, err)
		}
		at := *sp
		at.Offset = 0 // regs holds the scale factor alone
		if sf, err = scaleFactor(&at, regs); err != nil {
			return fmt.Errorf("sunspec: %s: %s: %w", d.id, where, err)
		}
	}
	regs, err := encodeValue(p, v, sf)
	if err != nil {
		return fmt.Errorf("sunspec: %s: %s: %w", d.id, where, err)
	}
	if err := d.client.WriteMultipleRegisters(ctx, m.Addr+uint16(p.Offset), regs); err != nil {
		return fmt.Errorf("sunspec: %s: %s: %w", d.id, where, err)
	}
	d.log.Info("sunspec point written", "model", m.ID, "point", p.Name, "value", v.String())
	if staticIDs[m.ID] {
		if blocks, err := readModels(ctx, d.client, []ModelInfo{m}); err == nil {
			d.static[m.ID] = blocks[0]
		}
	}
	return nil
}

// resolve finds a point of the device's chain by name. Caller holds d.mu.
func (d *Device) resolve(point string) (ModelInfo, *Point, error) {
	model, name, qualified := strings.Cut(point, ".")
	if !qualified {
		name, model = model, ""
	}
	for _, m := range d.info.Models {
		if model != "" && model != strconv.Itoa(int(m.ID)) && model != m.Name {
			continue
		}
		def, ok := Definition(m.ID)
		if !ok {
			continue
		}
		if p, ok := def.Point(name); ok && p.Name != "ID" && p.Name != "L" {
			return m, p, nil
		}
	}
	return ModelInfo{}, nil, fmt.Errorf("point %q: %w (models %s)", point, ErrUnknownPoint, d.info.IDs())
}

// encodeValue turns v into the registers of p, scaled by 10^-sf.
func encodeValue(p *Point, v payload.Value, sf int) ([]uint16, error) {
	var x float64
	switch v.Type() {
	case payload.TypeFloat:
		x = v.Float()
	case payload.TypeInt:
		x = float64(v.Int())
	case payload.TypeBool:
		if p.Type != TypeEnum16 {
			return nil, fmt.Errorf("a bool fits only an enum point, this is %s", p.Type)
		}
		if v.Bool() {
			x = 1
		}
	case payload.TypeString:
		n, ok := p.SymbolValue(v.Str())
		if !ok {
			return nil, fmt.Errorf("%q is not one of the point's symbols %s: %w", v.Str(), symbolList(p), ErrOutOfRange)
		}
		x = float64(n)
	default:
		return nil, fmt.Errorf("value %v has no usable type", v)
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil, fmt.Errorf("value %v: %w", x, ErrOutOfRange)
	}
	if strings.HasPrefix(p.Units, "%") {
		lo := 0.0
		if p.Type == TypeInt16 || p.Type == TypeInt32 {
			lo = -100
		}
		if x < lo || x > 100 {
			return nil, fmt.Errorf("value %g%%, want %g..100: %w", x, lo, ErrOutOfRange)
		}
	}
	raw := math.Round(Scale(x, -sf))
	if got := Scale(raw, sf); math.Abs(got-x) > 1e-9*math.Max(1, math.Abs(x)) {
		return nil, fmt.Errorf("value %g is finer than the point's resolution %g: %w", x, Scale(1, sf), ErrOutOfRange)
	}
	if len(p.Symbols) > 0 && p.Type == TypeEnum16 && p.Symbol(int64(raw)) == "" {
		return nil, fmt.Errorf("value %g is not one of the point's symbols %s: %w", x, symbolList(p), ErrOutOfRange)
	}
	lim := func(lo, hi float64) error {
		if raw < lo || raw > hi {
			return fmt.Errorf("value %g (register value %g) outside %g..%g: %w", x, raw, Scale(lo, sf), Scale(hi, sf), ErrOutOfRange)
		}
		return nil
	}
	switch p.Type {
	case TypeUint16, TypeEnum16, TypeBitfield16, TypeCount:
		if err := lim(0, 0xFFFE); err != nil {
			return nil, err
		}
		return []uint16{uint16(raw)}, nil
	case TypeInt16:
		if err := lim(-0x7FFF, 0x7FFF); err != nil {
			return nil, err
		}
		return []uint16{uint16(int16(raw))}, nil
	case TypeUint32, TypeEnum32, TypeBitfield32:
		if err := lim(0, 0xFFFFFFFE); err != nil {
			return nil, err
		}
		u := uint32(raw)
		return []uint16{uint16(u >> 16), uint16(u)}, nil
	case TypeInt32:
		if err := lim(-0x7FFFFFFF, 0x7FFFFFFF); err != nil {
			return nil, err
		}
		u := uint32(int32(raw))
		return []uint16{uint16(u >> 16), uint16(u)}, nil
	case TypeFloat32:
		u := math.Float32bits(float32(x))
		return []uint16{uint16(u >> 16), uint16(u)}, nil
	}
	return nil, fmt.Errorf("writing a %s point is not supported", p.Type)
}

func symbolList(p *Point) string {
	s := make([]string, len(p.Symbols))
	for i, sym := range p.Symbols {
		s[i] = fmt.Sprintf("%s=%d", sym.Name, sym.Value)
	}
	return strings.Join(s, ", ")
}
