// Package sunspecsim simulates a SunSpec inverter with MPPT inputs on a
// Modbus RTU line, for tests, benchmarks, the demo and bench-testing a
// gateway on site.
//
// An Inverter is a modbussim Unit whose holding registers hold a SunSpec
// map laid out from the same embedded SunSpec model definitions the driver
// reads with: the "SunS" marker at a configurable base address, then a
// configurable chain of models (by default 1, 103, 160 with two modules,
// 120, 121, 123) and the end model. Every point starts at its type's
// not-implemented value; the simulator fills those it models.
//
// Physics: an irradiance curve over the day (a half sine from 06:00 to
// 18:00 of the simulated clock, or a fixed value set by a test) drives the
// DC power of each MPPT module, the AC power (clipped at the power limit of
// model 123 when it is enabled), the temperatures and the lifetime energy
// counters. The simulated clock moves only through Advance, so tests are
// deterministic; Run advances it from the real clock, compressed by a speed
// factor, for demos.
//
// Faults: InjectFault sets Evt1 bits and the FAULT operating state,
// InjectModuleFault sets a module's DCEvt bits and takes it off line,
// ResetEnergy sets the lifetime counter back, and Set/SetRaw/
// SetNotImplemented set any point. A master's writes are accepted on the
// points the definitions mark RW only (others get exception 02), and a
// percentage above 100 gets exception 03.
package sunspecsim

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec"
)

// Model is one model of the simulated chain.
type Model struct {
	ID uint16
	// Repeats is the number of repeating blocks (modules of model 160).
	Repeats int
}

// DefaultChain is the chain of a three-phase inverter with two MPPT
// inputs, nameplate, settings and controls.
var DefaultChain = []Model{{ID: 1}, {ID: 103}, {ID: 160, Repeats: 2}, {ID: 120}, {ID: 121}, {ID: 123}}

// Config configures an Inverter.
type Config struct {
	Unit byte   // address on the line, 1..247
	Base uint16 // address of the SunS marker: 40000, 0 or 50000 (used as given)
	// Chain is the models after the marker; nil means DefaultChain. It must
	// start with model 1 and hold one inverter model (101-103, 111-113).
	Chain []Model
	// OmitEndLength ends the map with the end model's ID alone: its L
	// register is outside the unit's table, as on some devices.
	OmitEndLength bool
	// Identity for model 1; empty fields get defaults.
	Manufacturer, ModelName, Version, Serial string
	// RatedPower is the AC power rating in W (default 5000).
	RatedPower float64
	// Start is the simulated clock's start (default today 12:00 UTC, full sun).
	Start time.Time
	// Energy is the AC lifetime energy at the start in Wh (default 1 MWh).
	Energy float64
}

// scale factors the simulator reports; others stay not implemented.
var defaultSF = map[string]int16{
	"A_SF": -2, "V_SF": -1, "W_SF": 0, "Hz_SF": -2, "WH_SF": 0, "DCA_SF": -2, "DCV_SF": -1,
	"DCW_SF": 0, "Tmp_SF": -1, "WRtg_SF": 0, "VARtg_SF": 0, "WMax_SF": 0, "WMaxLimPct_SF": -1, "DCWH_SF": 0,
}

type place struct {
	def     *sunspec.ModelDef
	addr    int
	repeats int
}

// Inverter is one simulated SunSpec device.
type Inverter struct {
	unit      *modbussim.Unit
	base      int
	places    []place
	byID      map[uint16]int // first place of each model id
	inverter  uint16
	rated     float64
	writeable []bool // by register, relative to base: inside a RW point

	mu         sync.Mutex
	now        time.Time
	energy     float64 // Wh, AC lifetime
	modEnergy  []float64
	modFault   []uint32 // DCEvt bits per module
	fault      bool
	faultBits  uint32
	irradiance float64 // NaN: follow the day curve
}

// New lays the map out on a new unit of srv.
func New(srv *modbussim.Server, cfg Config) (*Inverter, error) {
	chain := cfg.Chain
	if chain == nil {
		chain = DefaultChain
	}
	if len(chain) == 0 || chain[0].ID != 1 {
		return nil, fmt.Errorf("sunspecsim: unit %d: the chain must start with model 1", cfg.Unit)
	}
	inv := &Inverter{base: int(cfg.Base), byID: map[uint16]int{}, rated: cfg.RatedPower, irradiance: math.NaN(), now: cfg.Start}
	if inv.rated <= 0 {
		inv.rated = 5000
	}
	inv.energy = cfg.Energy
	if inv.energy <= 0 {
		inv.energy = 1_000_000
	}
	if inv.now.IsZero() {
		y, m, d := time.Now().UTC().Date()
		inv.now = time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	}
	addr := inv.base + 2
	for _, m := range chain {
		def, ok := sunspec.Definition(m.ID)
		if !ok {
			return nil, fmt.Errorf("sunspecsim: unit %d: model %d has no definition", cfg.Unit, m.ID)
		}
		if def.Group == nil && m.Repeats != 0 {
			return nil, fmt.Errorf("sunspecsim: unit %d: model %d has no repeating block", cfg.Unit, m.ID)
		}
		if _, ok := inv.byID[m.ID]; !ok {
			inv.byID[m.ID] = len(inv.places)
		}
		switch m.ID {
		case 101, 102, 103, 111, 112, 113:
			if inv.inverter != 0 {
				return nil, fmt.Errorf("sunspecsim: unit %d: two inverter models (%d, %d)", cfg.Unit, inv.inverter, m.ID)
			}
			inv.inverter = m.ID
		case 160:
			inv.modEnergy = make([]float64, m.Repeats)
			inv.modFault = make([]uint32, m.Repeats)
		}
		inv.places = append(inv.places, place{def: def, addr: addr, repeats: m.Repeats})
		addr += def.FixedLen
		if def.Group != nil {
			addr += m.Repeats * def.Group.Len
		}
	}
	if inv.inverter == 0 {
		return nil, fmt.Errorf("sunspecsim: unit %d: the chain has no inverter model", cfg.Unit)
	}
	size := addr + 2
	if cfg.OmitEndLength {
		size = addr + 1
	}
	if size > 0x10000 {
		return nil, fmt.Errorf("sunspecsim: unit %d: map of %d registers from base %d runs past 65535", cfg.Unit, size-inv.base, inv.base)
	}
	u, err := srv.AddUnit(cfg.Unit, modbussim.Sizes{HoldingRegisters: size})
	if err != nil {
		return nil, err
	}
	inv.unit = u
	inv.writeable = make([]bool, size-inv.base)

	ident := map[string]string{"Mn": cfg.Manufacturer, "Md": cfg.ModelName, "Vr": cfg.Version, "SN": cfg.Serial, "Opt": ""}
	for k, dflt := range map[string]string{"Mn": "Luling Solar", "Md": "SIM-5K-3P", "Vr": "1.4.2", "SN": fmt.Sprintf("SIM%05d", cfg.Unit)} {
		if ident[k] == "" {
			ident[k] = dflt
		}
	}
	u.Update(func(r *modbussim.Registers) {
		h := r.HoldingRegisters
		h[inv.base], h[inv.base+1] = sunspec.Marker0, sunspec.Marker1
		for _, p := range inv.places {
			regs := h[p.addr:]
			total := p.def.FixedLen
			if p.def.Group != nil {
				total += p.repeats * p.def.Group.Len
			}
			regs[0], regs[1] = p.def.ID, uint16(total-2)
			for i := range p.def.Points[2:] {
				pt := &p.def.Points[i+2]
				inv.initPoint(regs, pt, ident)
			}
			if p.def.Group != nil {
				for k := range p.repeats {
					g := regs[p.def.FixedLen+k*p.def.Group.Len:]
					for i := range p.def.Group.Points {
						inv.initPoint(g, &p.def.Group.Points[i], ident)
					}
					setUint(g, p.def.Group.Points, "ID", uint64(k+1))
					copy(g[1:9], sunspec.EncodeString(fmt.Sprintf("PV%d", k+1), 8))
				}
				setUint(regs, p.def.Points, "N", uint64(p.repeats))
			}
			for _, pt := range p.def.Points {
				if pt.Writable {
					for j := range pt.Size {
						inv.writeable[p.addr+pt.Offset+j-inv.base] = true
					}
				}
			}
			switch p.def.ID {
			case 1:
				setUint(regs, p.def.Points, "DA", uint64(cfg.Unit))
			case 120:
				setUint(regs, p.def.Points, "DERTyp", 4) // PV
				setUint(regs, p.def.Points, "WRtg", uint64(inv.rated))
				setUint(regs, p.def.Points, "VARtg", uint64(inv.rated))
			case 121:
				setUint(regs, p.def.Points, "WMax", uint64(inv.rated))
			case 123:
				setUint(regs, p.def.Points, "Conn", 1)
				setUint(regs, p.def.Points, "WMaxLimPct", 1000) // 100.0 % at SF -1
				setUint(regs, p.def.Points, "WMaxLim_Ena", 0)
			}
		}
		h[addr] = sunspec.EndID
		if !cfg.OmitEndLength {
			h[addr+1] = 0
		}
	})
	u.SetHoldingHooks(inv.checkWrite, nil)
	inv.Advance(0)
	return inv, nil
}

func (inv *Inverter) initPoint(regs []uint16, p *sunspec.Point, ident map[string]string) {
	r := regs[p.Offset : p.Offset+p.Size]
	switch p.Type {
	case sunspec.TypeString:
		copy(r, sunspec.EncodeString(ident[p.Name], p.Size))
		return
	case sunspec.TypeSunssf:
		if sf, ok := defaultSF[p.Name]; ok {
			r[0] = uint16(sf)
			return
		}
	}
	copy(r, NotImplemented(p.Type, p.Size))
}

// NotImplemented returns the registers of a point of type typ (size
// registers) that says "not implemented".
func NotImplemented(typ string, size int) []uint16 {
	r := make([]uint16, size)
	switch typ {
	case sunspec.TypeInt16, sunspec.TypeSunssf, sunspec.TypePad, sunspec.TypeInt32, sunspec.TypeInt64:
		r[0] = 0x8000
	case sunspec.TypeUint16, sunspec.TypeEnum16, sunspec.TypeBitfield16, sunspec.TypeCount,
		sunspec.TypeUint32, sunspec.TypeEnum32, sunspec.TypeBitfield32, sunspec.TypeUint64:
		for i := range r {
			r[i] = 0xFFFF
		}
	case sunspec.TypeFloat32:
		r[0], r[1] = 0x7FC0, 0
	case sunspec.TypeFloat64:
		r[0] = 0x7FF8
	}
	return r
}

func setUint(regs []uint16, pts []sunspec.Point, name string, v uint64) {
	for _, p := range pts {
		if p.Name == name {
			for i := p.Size - 1; i >= 0; i-- {
				regs[p.Offset+i] = uint16(v)
				v >>= 16
			}
			return
		}
	}
}

// Unit is the simulated Modbus unit.
func (inv *Inverter) Unit() *modbussim.Unit { return inv.unit }

// InverterModel is the chain's inverter model ID.
func (inv *Inverter) InverterModel() uint16 { return inv.inverter }

// Addr is the address of the ID register of the first model with id.
func (inv *Inverter) Addr(id uint16) (uint16, bool) {
	i, ok := inv.byID[id]
	if !ok {
		return 0, false
	}
	return uint16(inv.places[i].addr), true
}

// checkWrite vets a master's write: RW points only, percentages ≤ 100.
func (inv *Inverter) checkWrite(addr int, vals []uint16) modbussim.Exception {
	for i := range vals {
		a := addr + i - inv.base
		if a < 0 || a >= len(inv.writeable) || !inv.writeable[a] {
			return modbussim.IllegalDataAddress
		}
	}
	if i, ok := inv.byID[123]; ok {
		p := inv.places[i]
		pt, _ := p.def.Point("WMaxLimPct")
		if at := p.addr + pt.Offset; addr <= at && at < addr+len(vals) && vals[at-addr] > 1000 {
			return modbussim.IllegalDataValue // above 100.0 % at SF -1
		}
	}
	return 0
}

// locate finds point name of model id, or of its module (module ≥ 0).
func (inv *Inverter) locate(id uint16, module int, name string) (*sunspec.Point, int, place, error) {
	i, ok := inv.byID[id]
	if !ok {
		return nil, 0, place{}, fmt.Errorf("sunspecsim: no model %d in the chain", id)
	}
	p := inv.places[i]
	if module < 0 {
		pt, ok := p.def.Point(name)
		if !ok {
			return nil, 0, p, fmt.Errorf("sunspecsim: model %d has no point %s", id, name)
		}
		return pt, p.addr + pt.Offset, p, nil
	}
	if p.def.Group == nil || module >= p.repeats {
		return nil, 0, p, fmt.Errorf("sunspecsim: model %d has no module %d", id, module)
	}
	pt, ok := p.def.Group.Point(name)
	if !ok {
		return nil, 0, p, fmt.Errorf("sunspecsim: model %d modules have no point %s", id, name)
	}
	return pt, p.addr + p.def.FixedLen + module*p.def.Group.Len + pt.Offset, p, nil
}

// SetRaw sets a point's registers as they are sent (module < 0 for a point
// of the fixed block, else the module's index).
func (inv *Inverter) SetRaw(id uint16, module int, name string, regs ...uint16) error {
	pt, at, _, err := inv.locate(id, module, name)
	if err != nil {
		return err
	}
	if len(regs) != pt.Size {
		return fmt.Errorf("sunspecsim: point %s is %d registers, got %d", name, pt.Size, len(regs))
	}
	return inv.unit.WriteHolding(at, regs...)
}

// SetNotImplemented sets a point to its type's not-implemented value.
func (inv *Inverter) SetNotImplemented(id uint16, module int, name string) error {
	pt, _, _, err := inv.locate(id, module, name)
	if err != nil {
		return err
	}
	return inv.SetRaw(id, module, name, NotImplemented(pt.Type, pt.Size)...)
}

// Set sets a point to v in its units, scaled by the scale factor the
// device currently reports.
func (inv *Inverter) Set(id uint16, module int, name string, v float64) error {
	var err error
	inv.unit.Update(func(r *modbussim.Registers) {
		err = inv.setLocked(r.HoldingRegisters, id, module, name, v)
	})
	return err
}

func (inv *Inverter) setLocked(h []uint16, id uint16, module int, name string, v float64) error {
	pt, at, p, err := inv.locate(id, module, name)
	if err != nil {
		return err
	}
	if pt.Type == sunspec.TypeFloat32 {
		u := math.Float32bits(float32(v))
		h[at], h[at+1] = uint16(u>>16), uint16(u)
		return nil
	}
	raw := v
	if pt.SF != "" {
		sp, _ := p.def.Point(pt.SF)
		s := h[p.addr+sp.Offset]
		if s == 0x8000 {
			return fmt.Errorf("sunspecsim: point %s: scale factor %s is not implemented", name, pt.SF)
		}
		raw = sunspec.Scale(v, -int(int16(s)))
	}
	raw = math.Round(raw)
	switch pt.Type {
	case sunspec.TypeInt16:
		raw = math.Max(-0x7FFF, math.Min(0x7FFF, raw))
		h[at] = uint16(int16(raw))
	case sunspec.TypeUint16, sunspec.TypeEnum16, sunspec.TypeBitfield16, sunspec.TypeCount, sunspec.TypeAcc16:
		h[at] = uint16(math.Max(0, math.Min(0xFFFE, raw)))
	case sunspec.TypeUint32, sunspec.TypeAcc32, sunspec.TypeEnum32, sunspec.TypeBitfield32:
		u := uint32(math.Max(0, math.Min(0xFFFFFFFE, raw)))
		h[at], h[at+1] = uint16(u>>16), uint16(u)
	case sunspec.TypeInt32:
		u := uint32(int32(math.Max(-0x7FFFFFFF, math.Min(0x7FFFFFFF, raw))))
		h[at], h[at+1] = uint16(u>>16), uint16(u)
	default:
		return fmt.Errorf("sunspecsim: point %s: setting a %s is not supported", name, pt.Type)
	}
	return nil
}

// Block returns a model's registers as the unit holds them, decoded.
func (inv *Inverter) Block(id uint16) (*sunspec.Block, error) {
	i, ok := inv.byID[id]
	if !ok {
		return nil, fmt.Errorf("sunspecsim: no model %d in the chain", id)
	}
	p := inv.places[i]
	n := p.def.FixedLen
	if p.def.Group != nil {
		n += p.repeats * p.def.Group.Len
	}
	regs, err := inv.unit.ReadHolding(p.addr, n)
	if err != nil {
		return nil, err
	}
	return sunspec.DecodeBlock(uint16(p.addr), regs)
}

// Irradiance is the clear-sky day curve: 0 before 06:00 and after 18:00,
// a half sine peaking at 1 at 12:00, in t's location.
func Irradiance(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	if h <= 6 || h >= 18 {
		return 0
	}
	return math.Sin(math.Pi * (h - 6) / 12)
}

// SetIrradiance fixes the irradiance (0..1) instead of the day curve; NaN
// returns to the curve. It takes effect at the next Advance.
func (inv *Inverter) SetIrradiance(x float64) {
	inv.mu.Lock()
	inv.irradiance = x
	inv.mu.Unlock()
}

// Now is the simulated clock.
func (inv *Inverter) Now() time.Time {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.now
}

// Energy is the simulated AC lifetime energy in Wh.
func (inv *Inverter) Energy() float64 {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.energy
}

// InjectFault sets bits in Evt1 (bit 0 ground fault, 7 over temperature,
// ...) and puts the inverter in FAULT: no power until ClearFault.
func (inv *Inverter) InjectFault(bits uint32) {
	inv.mu.Lock()
	inv.fault = true
	inv.faultBits |= bits
	inv.mu.Unlock()
	inv.Advance(0)
}

// ClearFault clears Evt1 and leaves FAULT.
func (inv *Inverter) ClearFault() {
	inv.mu.Lock()
	inv.fault, inv.faultBits = false, 0
	inv.mu.Unlock()
	inv.Advance(0)
}

// InjectModuleFault sets bits in the DCEvt of MPPT module i (0-based; bit 12
// blown fuse, 15 arc detection, ...): the input stops delivering power, the
// others go on.
func (inv *Inverter) InjectModuleFault(i int, bits uint32) error {
	inv.mu.Lock()
	if i < 0 || i >= len(inv.modFault) {
		inv.mu.Unlock()
		return fmt.Errorf("sunspecsim: no module %d (the chain has %d)", i, len(inv.modFault))
	}
	inv.modFault[i] |= bits
	inv.mu.Unlock()
	inv.Advance(0)
	return nil
}

// ClearModuleFault clears the DCEvt of module i.
func (inv *Inverter) ClearModuleFault(i int) {
	inv.mu.Lock()
	if i >= 0 && i < len(inv.modFault) {
		inv.modFault[i] = 0
	}
	inv.mu.Unlock()
	inv.Advance(0)
}

// ResetEnergy sets the lifetime energy counter to wh, as a firmware reset
// or a swapped control board does.
func (inv *Inverter) ResetEnergy(wh float64) {
	inv.mu.Lock()
	inv.energy = wh
	inv.mu.Unlock()
	inv.Advance(0)
}

// Run advances the simulated clock by speed × tick every tick of the real
// clock until ctx ends.
func (inv *Inverter) Run(ctx context.Context, tick time.Duration, speed float64) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			inv.Advance(time.Duration(float64(tick) * speed))
		}
	}
}

// Advance moves the simulated clock by d, integrating the energy counters
// in steps of at most a minute, and updates every simulated register.
func (inv *Inverter) Advance(d time.Duration) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.unit.Update(func(r *modbussim.Registers) {
		h := r.HoldingRegisters
		for d > 0 {
			step := min(d, time.Minute)
			ac, mods := inv.power(h)
			hours := step.Hours()
			inv.energy += ac * hours
			for i, m := range mods {
				inv.modEnergy[i] += m.w * hours
			}
			inv.now = inv.now.Add(step)
			d -= step
		}
		inv.publish(h)
	})
}

type module struct{ v, a, w float64 }

// power computes the AC power and the modules' DC operating points now.
// Caller holds inv.mu and the unit's lock.
func (inv *Inverter) power(h []uint16) (float64, []module) {
	irr := inv.irradiance
	if math.IsNaN(irr) {
		irr = Irradiance(inv.now)
	}
	irr = math.Max(0, math.Min(1, irr))
	if inv.fault || irr == 0 {
		mods := make([]module, len(inv.modEnergy))
		for i := range mods {
			mods[i].v = 300 * irr
		}
		return 0, mods
	}
	dc := math.Min(inv.rated*1.05*irr, dcLimit(inv, h))
	mods := make([]module, len(inv.modEnergy))
	weights := 0.0
	for i := range mods {
		weights += 1 - 0.02*float64(i) // strings differ a little
	}
	for i := range mods {
		share := dc * (1 - 0.02*float64(i)) / weights
		v := 330 + 50*irr - 3*float64(i)
		if inv.modFault[i] != 0 { // a faulted input is open: voltage, no current
			mods[i] = module{v: v + 40}
			continue
		}
		mods[i] = module{v: v, a: share / v, w: share}
	}
	dc = 0
	for _, m := range mods {
		dc += m.w
	}
	if len(mods) == 0 {
		dc = math.Min(inv.rated*1.05*irr, dcLimit(inv, h))
	}
	return dc * 0.965, mods
}

// dcLimit is the DC power at which the AC output meets the power limit.
func dcLimit(inv *Inverter, h []uint16) float64 {
	if lim, ok := inv.limit(h); ok {
		return inv.rated * lim / 0.965
	}
	return math.Inf(1)
}

// limit returns the enabled power limit of model 123 as a fraction.
func (inv *Inverter) limit(h []uint16) (float64, bool) {
	i, ok := inv.byID[123]
	if !ok {
		return 0, false
	}
	p := inv.places[i]
	ena, _ := p.def.Point("WMaxLim_Ena")
	pct, _ := p.def.Point("WMaxLimPct")
	sf, _ := p.def.Point("WMaxLimPct_SF")
	if h[p.addr+ena.Offset] != 1 || h[p.addr+pct.Offset] == 0xFFFF || h[p.addr+sf.Offset] == 0x8000 {
		return 0, false
	}
	return sunspec.Scale(float64(h[p.addr+pct.Offset]), int(int16(h[p.addr+sf.Offset]))) / 100, true
}

// publish writes the simulated state into the registers. Caller holds
// inv.mu and the unit's lock.
func (inv *Inverter) publish(h []uint16) {
	ac, mods := inv.power(h)
	irr := inv.irradiance
	if math.IsNaN(irr) {
		irr = Irradiance(inv.now)
	}
	var dcW, dcA, dcV float64
	for _, m := range mods {
		dcW += m.w
		dcA += m.a
		dcV = math.Max(dcV, m.v)
	}
	if len(mods) == 0 && ac > 0 {
		dcW, dcV = ac/0.965, 380
		dcA = dcW / dcV
	}
	state := 4.0 // MPPT
	switch {
	case inv.fault:
		state = 7
	case ac == 0:
		state = 2 // SLEEPING
	default:
		if lim, ok := inv.limit(h); ok && inv.rated*1.05*irr*0.965 > inv.rated*lim {
			state = 5 // THROTTLED
		}
	}
	phases := 3.0
	switch inv.inverter {
	case 101, 111:
		phases = 1
	case 102, 112:
		phases = 2
	}
	id := inv.inverter
	set := func(name string, v float64) { _ = inv.setLocked(h, id, -1, name, v) }
	set("W", ac)
	set("A", ac/(230*phases))
	set("AphA", ac/(230*phases))
	set("PhVphA", 230.0)
	set("Hz", 50.0)
	set("WH", math.Floor(inv.energy))
	set("DCW", dcW)
	set("DCA", dcA)
	set("DCV", dcV)
	set("TmpCab", 25+20*irr)
	set("St", state)
	set("Evt1", float64(inv.faultBits))
	if _, ok := inv.byID[160]; ok {
		for i, m := range mods {
			_ = inv.setLocked(h, 160, i, "DCV", m.v)
			_ = inv.setLocked(h, 160, i, "DCA", m.a)
			_ = inv.setLocked(h, 160, i, "DCW", m.w)
			_ = inv.setLocked(h, 160, i, "DCWH", math.Floor(inv.modEnergy[i]))
			st := state
			if inv.modFault[i] != 0 && !inv.fault {
				st = 7
			}
			_ = inv.setLocked(h, 160, i, "DCSt", st)
			_ = inv.setLocked(h, 160, i, "DCEvt", float64(inv.modFault[i]))
		}
	}
}
