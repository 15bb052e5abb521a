package sunspec_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
	"github.com/luling-edge/luling/payload"
)

const fastBaud = 115200

// The embedded JSON gives the same offsets as the register tables of
// PROTOCOLS.md §4, written down independently from the SunSpec documents.
func TestDefinitionsMatchPublishedOffsets(t *testing.T) {
	ids, err := sunspec.Definitions()
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 160}
	if !slices.Equal(ids, want) {
		t.Fatalf("definitions %v, want %v", ids, want)
	}
	offsets := map[uint16]map[string]int{
		1:   {"Mn": 2, "Md": 18, "Opt": 34, "Vr": 42, "SN": 50, "DA": 66},
		103: {"A": 2, "A_SF": 6, "PhVphA": 10, "V_SF": 13, "W": 14, "W_SF": 15, "Hz": 16, "Hz_SF": 17, "WH": 24, "WH_SF": 26, "DCA": 27, "DCA_SF": 28, "DCV": 29, "DCV_SF": 30, "DCW": 31, "DCW_SF": 32, "TmpCab": 33, "TmpSnk": 34, "Tmp_SF": 37, "St": 38, "Evt1": 40},
		113: {"W": 22, "Hz": 24, "WH": 32, "DCA": 34, "DCV": 36, "DCW": 38, "TmpCab": 40, "St": 48, "Evt1": 50},
		160: {"DCA_SF": 2, "DCV_SF": 3, "DCW_SF": 4, "DCWH_SF": 5, "N": 8},
	}
	for id, pts := range offsets {
		def, _ := sunspec.Definition(id)
		for name, off := range pts {
			p, ok := def.Point(name)
			if !ok || p.Offset != off {
				t.Errorf("model %d point %s: offset %v (found %v), want %d", id, name, p, ok, off)
			}
		}
	}
	lens := map[uint16]int{1: 66, 101: 50, 103: 50, 113: 60, 160: 8}
	for id, l := range lens {
		def, _ := sunspec.Definition(id)
		if def.FixedLen-2 != l {
			t.Errorf("model %d: fixed length %d, want %d", id, def.FixedLen-2, l)
		}
	}
	m160, _ := sunspec.Definition(160)
	g := m160.Group
	if g == nil || g.Len != 20 {
		t.Fatalf("model 160 group %+v, want 20 registers", g)
	}
	for name, off := range map[string]int{"ID": 0, "IDStr": 1, "DCA": 9, "DCV": 10, "DCW": 11, "DCWH": 12, "Tms": 14, "Tmp": 16, "DCSt": 17, "DCEvt": 18} {
		if p, ok := g.Point(name); !ok || p.Offset != off {
			t.Errorf("model 160 module point %s: %v, want offset %d", name, p, off)
		}
	}
	m123, _ := sunspec.Definition(123)
	if p, _ := m123.Point("WMaxLimPct"); !p.Writable || p.SF != "WMaxLimPct_SF" {
		t.Errorf("WMaxLimPct: %+v, want writable with scale factor WMaxLimPct_SF", p)
	}
	if p, _ := m123.Point("WMaxLimPct_SF"); p.Writable {
		t.Error("WMaxLimPct_SF is writable, the definition says read-only")
	}
}

func TestScanFindsChainAtEveryBase(t *testing.T) {
	r := newRig(t, fastBaud)
	cases := []struct {
		unit    byte
		base    uint16
		omitEnd bool
	}{{1, 40000, false}, {2, 0, false}, {3, 50000, true}, {4, 40000, true}}
	for _, c := range cases {
		r.inverter(t, sunspecsim.Config{Unit: c.unit, Base: c.base, OmitEndLength: c.omitEnd, Serial: fmt.Sprintf("SN-%d", c.unit), Manufacturer: "Luling Solar"})
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("unit%d-base%d", c.unit, c.base), func(t *testing.T) {
			info, err := sunspec.Scan(context.Background(), r.bus.Device(fmt.Sprint("scan-", c.unit)), c.unit)
			if err != nil {
				t.Fatal(err)
			}
			if info.Base != c.base {
				t.Errorf("base %d, want %d", info.Base, c.base)
			}
			type ml struct {
				id  uint16
				l   int
				adr uint16
			}
			var got []ml
			for _, m := range info.Models {
				got = append(got, ml{m.ID, m.Len, m.Addr})
			}
			b := c.base + 2
			want := []ml{{1, 66, b}, {103, 50, b + 68}, {160, 48, b + 120}, {120, 26, b + 170}, {121, 30, b + 198}, {123, 24, b + 230}}
			if !slices.Equal(got, want) {
				t.Errorf("chain %v, want %v", got, want)
			}
			if info.Manufacturer != "Luling Solar" || info.Serial != fmt.Sprintf("SN-%d", c.unit) || info.Model != "SIM-5K-3P" || info.Version != "1.4.2" {
				t.Errorf("identity %q %q %q %q", info.Manufacturer, info.Model, info.Version, info.Serial)
			}
			s := info.String()
			for _, line := range []string{fmt.Sprintf("SunSpec map at %d", c.base), "serial:       SN-", "inverter_three_phase (Inverter (Three Phase))"} {
				if !strings.Contains(s, line) {
					t.Errorf("table lacks %q:\n%s", line, s)
				}
			}
			row := fmt.Sprintf("160 %d 48 mppt (Multiple MPPT Inverter Extension Model)", b+120)
			if !slices.ContainsFunc(strings.Split(s, "\n"), func(l string) bool { return strings.Join(strings.Fields(l), " ") == row }) {
				t.Errorf("table lacks the row %q:\n%s", row, s)
			}
		})
	}
}

func TestScanRefusesNonSunSpecUnit(t *testing.T) {
	r := newRig(t, fastBaud)
	if _, err := r.srv.AddUnit(9, modbussim.Sizes{HoldingRegisters: 45000}); err != nil {
		t.Fatal(err)
	}
	_, err := sunspec.Scan(context.Background(), r.bus.Device("plain"), 9)
	if !errors.Is(err, sunspec.ErrNotSunSpec) {
		t.Fatalf("err %v, want ErrNotSunSpec", err)
	}
	if !strings.Contains(err.Error(), "40000: 0x0000 0x0000") || !strings.Contains(err.Error(), "50000: device exception 0x02") {
		t.Errorf("error does not say what each base held: %v", err)
	}
}

// Values read with their scale factors come out exactly as the decimal
// value the raw register and the exponent describe.
func TestPollAppliesScaleFactorsExactly(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 7, Base: 40000})
	set := func(module int, name string, regs ...uint16) {
		t.Helper()
		if err := inv.SetRaw(103, module, name, regs...); err != nil {
			t.Fatal(err)
		}
	}
	set(-1, "W_SF", 0xFFFF) // -1
	set(-1, "W", 23456)     // 2345.6 W
	set(-1, "WH_SF", 1)
	set(-1, "WH", 0x0001, 0xE240) // 123456 × 10
	set(-1, "DCV_SF", 0xFFFF)
	set(-1, "DCV", 3847) // 384.7 V
	set(-1, "DCA_SF", 0xFFFE)
	set(-1, "DCA", 1234) // 12.34 A
	set(-1, "DCW_SF", 0)
	set(-1, "DCW", 2411)
	set(-1, "Tmp_SF", 0xFFFF)
	set(-1, "TmpCab", 0xFFCC) // -52 → -5.2 °C
	set(-1, "St", 5)
	for name, regs := range map[string][]uint16{"DCA_SF": {0xFFFD}, "DCV_SF": {0xFFFF}, "DCW_SF": {1}} {
		if err := inv.SetRaw(160, -1, name, regs...); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range [][3]uint16{{6007, 3712, 111}, {5993, 3698, 222}} {
		for j, name := range []string{"DCA", "DCV", "DCW"} {
			if err := inv.SetRaw(160, i, name, v[j]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := inv.SetRaw(160, 1, "ID", 42); err != nil {
		t.Fatal(err)
	}

	d := r.device(t, "inv-7", 7, nil)
	recs := poll(t, d)
	pv := find(recs, "pv")
	if len(pv) != 1 {
		t.Fatalf("pv records %v", recs)
	}
	want := map[string]payload.Value{
		"ac_power_w": payload.Float(2345.6), "ac_energy_wh": payload.Float(1234560), "dc_voltage_v": payload.Float(384.7),
		"dc_current_a": payload.Float(12.34), "dc_power_w": payload.Float(2411), "temp_c": payload.Float(-5.2),
		"state": payload.String("throttled"),
	}
	for k, v := range want {
		if got, ok := pv[0].Fields[k]; !ok || !got.Equal(v) {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if pv[0].Tags["device"] != "inv-7" || pv[0].Tags["model"] != "103" || pv[0].Tags["zone"] != "roof-b" {
		t.Errorf("pv tags %v", pv[0].Tags)
	}
	if got := pv[0].Fields["rated_power_w"]; !got.Equal(payload.Float(5000)) {
		t.Errorf("rated_power_w %v, want 5000 from model 120", got)
	}
	if got := pv[0].Fields["power_limit_pct"]; !got.Equal(payload.Float(100)) {
		t.Errorf("power_limit_pct %v, want 100 from model 123", got)
	}
	mp := find(recs, "pv_mppt")
	if len(mp) != 2 {
		t.Fatalf("pv_mppt records: %d, want 2", len(mp))
	}
	wantMod := []struct {
		module  string
		a, v, w float64
	}{{"1", 6.007, 371.2, 1110}, {"42", 5.993, 369.8, 2220}}
	for i, w := range wantMod {
		m := mp[i]
		if m.Tags["module"] != w.module || m.Tags["device"] != "inv-7" {
			t.Errorf("module %d tags %v, want module %s", i, m.Tags, w.module)
		}
		for k, v := range map[string]float64{"dc_current_a": w.a, "dc_voltage_v": w.v, "dc_power_w": w.w} {
			if got := m.Fields[k]; !got.Equal(payload.Float(v)) {
				t.Errorf("module %s %s = %v, want %v", w.module, k, got, v)
			}
		}
	}
}

func TestNotImplementedPointsAreAbsent(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 3, Base: 0})
	for _, p := range []string{"W_SF", "DCV", "TmpCab", "TmpSnk", "TmpTrns", "TmpOt", "St"} {
		if err := inv.SetNotImplemented(103, -1, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := inv.SetRaw(103, -1, "WH", 0, 0); err != nil { // acc32 0
		t.Fatal(err)
	}
	if err := inv.SetNotImplemented(160, 1, "DCA"); err != nil {
		t.Fatal(err)
	}
	d := r.device(t, "inv-3", 3, map[string]any{"base": 0})
	recs := poll(t, d)
	pv := find(recs, "pv")[0]
	for _, k := range []string{"ac_power_w", "dc_voltage_v", "temp_c", "ac_energy_wh", "state"} {
		if v, ok := pv.Fields[k]; ok {
			t.Errorf("%s = %v, want absent (not implemented)", k, v)
		}
	}
	for _, k := range []string{"dc_current_a", "dc_power_w"} {
		if _, ok := pv.Fields[k]; !ok {
			t.Errorf("%s missing, the device implements it", k)
		}
	}
	mp := find(recs, "pv_mppt")
	if _, ok := mp[1].Fields["dc_current_a"]; ok {
		t.Errorf("module 2 dc_current_a present, want absent: %v", mp[1].Fields)
	}
	if _, ok := mp[1].Fields["dc_voltage_v"]; !ok {
		t.Errorf("module 2 dc_voltage_v missing: %v", mp[1].Fields)
	}
	if ev := d.TakeEvents(); len(ev) != 0 {
		t.Errorf("events %v, want none", ev)
	}
}

func TestFloatInverter(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 5, Base: 40000, Chain: []sunspecsim.Model{{ID: 1}, {ID: 113}, {ID: 160, Repeats: 3}}})
	for name, v := range map[string]float64{"W": 3210.25, "DCV": 401.5, "WH": 765432} {
		if err := inv.Set(113, -1, name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := inv.SetNotImplemented(113, -1, "DCA"); err != nil {
		t.Fatal(err)
	}
	d := r.device(t, "inv-5", 5, nil)
	recs := poll(t, d)
	pv := find(recs, "pv")[0]
	if pv.Tags["model"] != "113" {
		t.Errorf("model tag %q", pv.Tags["model"])
	}
	for k, v := range map[string]float64{"ac_power_w": 3210.25, "dc_voltage_v": 401.5, "ac_energy_wh": 765432} {
		if got := pv.Fields[k]; !got.Equal(payload.Float(v)) {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if v, ok := pv.Fields["dc_current_a"]; ok {
		t.Errorf("dc_current_a = %v, want absent (NaN)", v)
	}
	if got := pv.Fields["state"]; !got.Equal(payload.String("mppt")) {
		t.Errorf("state %v, want mppt", got)
	}
	if n := len(find(recs, "pv_mppt")); n != 3 {
		t.Errorf("%d pv_mppt records, want 3", n)
	}
}

func TestEnergyCounterGoingBackIsAnEventNotNegativeYield(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 1, Base: 40000, Energy: 2_000_000})
	d := r.device(t, "inv-1", 1, nil)
	first := find(poll(t, d), "pv")[0]
	if got := first.Fields["ac_energy_wh"]; !got.Equal(payload.Float(2_000_000)) {
		t.Fatalf("ac_energy_wh %v, want 2000000", got)
	}
	inv.ResetEnergy(750)
	second := find(poll(t, d), "pv")[0]
	if v, ok := second.Fields["ac_energy_wh"]; ok {
		t.Errorf("ac_energy_wh = %v after the counter went back, want it left out", v)
	}
	if _, ok := second.Fields["ac_power_w"]; !ok {
		t.Error("the rest of the reading is lost too")
	}
	ev := d.TakeEvents()
	if len(ev) != 1 || ev[0].Measurement != "fault" || ev[0].Tags["code"] != sunspec.CodeEnergyReset || ev[0].Tags["device"] != "inv-1" ||
		!strings.Contains(ev[0].Fields["message"].Str(), "from 2000000 Wh to 750 Wh") || ev[0].Time.IsZero() {
		t.Fatalf("events %+v, want one energy_counter_reset fault", ev)
	}
	inv.Advance(60 * 60 * 1e9) // an hour of noon sun
	third := find(poll(t, d), "pv")[0]
	e, ok := third.Fields["ac_energy_wh"]
	if !ok || e.Float() < 750+4500 || e.Float() > 750+5100 {
		t.Errorf("ac_energy_wh after an hour = %v, want 750 plus an hour of about 5 kW", e)
	}
	if ev := d.TakeEvents(); len(ev) != 0 {
		t.Errorf("events %v after the counter grows again, want none", ev)
	}
}

func TestFaultRaisesEventsAndAlerts(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 2, Base: 50000})
	d := r.device(t, "inv-2", 2, nil)
	if st := find(poll(t, d), "pv")[0].Fields["state"]; !st.Equal(payload.String("mppt")) {
		t.Fatalf("state %v, want mppt", st)
	}
	if ev := d.TakeEvents(); len(ev) != 0 {
		t.Fatalf("events %v before any fault", ev)
	}
	inv.InjectFault(1<<0 | 1<<7) // ground fault, over temperature
	pv := find(poll(t, d), "pv")[0]
	if !pv.Fields["state"].Equal(payload.String("fault")) || pv.Fields["ac_power_w"].Float() != 0 {
		t.Errorf("state %v power %v, want fault and 0", pv.Fields["state"], pv.Fields["ac_power_w"])
	}
	ev := d.TakeEvents()
	faults := map[string]string{}
	var alerts []payload.Record
	for _, e := range ev {
		switch e.Measurement {
		case "fault":
			faults[e.Tags["code"]] = e.Fields["state"].Str()
		case "alert":
			alerts = append(alerts, e)
			if e.Tags["rule"] != "pv_fault" || e.Tags["severity"] != "major" || e.Tags["device"] != "inv-2" || e.Fields["message"].Str() == "" {
				t.Errorf("alert %+v", e)
			}
			if err := payload.CheckSchema(&e); err != nil {
				t.Error(err)
			}
		}
	}
	wantFaults := map[string]string{"ground_fault": "active", "over_temp": "active", "operating_state": "active"}
	if !mapsEqual(faults, wantFaults) || len(alerts) != 3 {
		t.Fatalf("faults %v and %d alerts, want %v and 3 alerts; events %+v", faults, len(alerts), wantFaults, ev)
	}
	// Nothing new while the fault persists.
	poll(t, d)
	if ev := d.TakeEvents(); len(ev) != 0 {
		t.Errorf("events %v while the same fault persists", ev)
	}
	inv.ClearFault()
	poll(t, d)
	faults = map[string]string{}
	for _, e := range d.TakeEvents() {
		if e.Measurement == "alert" {
			t.Errorf("alert %v when faults clear", e)
		}
		faults[e.Tags["code"]] = e.Fields["state"].Str()
	}
	if want := map[string]string{"ground_fault": "cleared", "over_temp": "cleared", "operating_state": "cleared"}; !mapsEqual(faults, want) {
		t.Errorf("faults %v, want %v", faults, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestWriteRefusesReadOnlyAndUnknownPoints(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 4, Base: 40000})
	d := r.device(t, "inv-4", 4, nil)
	ctx := context.Background()
	poll(t, d)
	before := inv.Unit().Stats().Requests
	cases := []struct {
		point string
		v     payload.Value
		want  error
		says  string
	}{
		{"W", payload.Float(100), sunspec.ErrReadOnly, "point W of model 103"},
		{"WMaxLimPct_SF", payload.Int(0), sunspec.ErrReadOnly, "WMaxLimPct_SF"},
		{"WRtg", payload.Float(9000), sunspec.ErrReadOnly, "model 120"},
		{"VArWMaxPctX", payload.Float(1), sunspec.ErrUnknownPoint, "models 1, 103, 160, 120, 121, 123"},
		{"122.PVConn", payload.Int(1), sunspec.ErrUnknownPoint, "122.PVConn"},
	}
	for _, c := range cases {
		err := d.Write(ctx, c.point, c.v)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "inv-4") {
			t.Errorf("Write(%s): %v, want %v naming %q", c.point, err, c.want, c.says)
		}
	}
	if n := inv.Unit().Stats().Requests - before; n != 0 {
		t.Errorf("%d requests reached the device for refused writes", n)
	}
	// Values the point cannot take are refused after reading the scale factor only.
	for _, c := range []struct {
		point string
		v     payload.Value
	}{{"WMaxLimPct", payload.Float(120)}, {"WMaxLimPct", payload.Float(-1)}, {"WMaxLimPct", payload.Float(33.33)}, {"WMaxLim_Ena", payload.String("MAYBE")}, {"WMaxLim_Ena", payload.Int(7)}} {
		if err := d.Write(ctx, c.point, c.v); !errors.Is(err, sunspec.ErrOutOfRange) {
			t.Errorf("Write(%s, %v): %v, want ErrOutOfRange", c.point, c.v, err)
		}
	}
	b, _ := inv.Block(123)
	if v, _ := b.Value("WMaxLimPct"); v != 100 {
		t.Errorf("WMaxLimPct %v after refused writes, want 100 untouched", v)
	}
}

func TestWritePowerLimitLandsInDevice(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 6, Base: 40000, RatedPower: 8000})
	inv.SetIrradiance(1)
	d := r.device(t, "inv-6", 6, nil)
	ctx := context.Background()
	if err := d.Write(ctx, "WMaxLimPct", payload.Float(55.5)); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(ctx, "controls.WMaxLim_Ena", payload.String("enabled")); err != nil {
		t.Fatal(err)
	}
	addr, _ := inv.Addr(123)
	def, _ := sunspec.Definition(123)
	pct, _ := def.Point("WMaxLimPct")
	ena, _ := def.Point("WMaxLim_Ena")
	regs, err := inv.Unit().ReadHolding(int(addr)+pct.Offset, 1)
	if err != nil || regs[0] != 555 {
		t.Fatalf("WMaxLimPct register %v (%v), want 555 (55.5 %% at SF -1)", regs, err)
	}
	regs, _ = inv.Unit().ReadHolding(int(addr)+ena.Offset, 1)
	if regs[0] != 1 {
		t.Fatalf("WMaxLim_Ena register %d, want 1", regs[0])
	}
	if err := d.Write(ctx, "121.WMax", payload.Int(7000)); err != nil {
		t.Fatal(err)
	}
	inv.Advance(0)
	pv := find(poll(t, d), "pv")[0]
	if !pv.Fields["power_limit_pct"].Equal(payload.Float(55.5)) || !pv.Fields["power_limit_enabled"].Equal(payload.Bool(true)) {
		t.Errorf("power limit fields %v %v", pv.Fields["power_limit_pct"], pv.Fields["power_limit_enabled"])
	}
	if !pv.Fields["max_power_w"].Equal(payload.Float(7000)) {
		t.Errorf("max_power_w %v, want 7000 after the write to model 121", pv.Fields["max_power_w"])
	}
	if w := pv.Fields["ac_power_w"].Float(); w > 0.555*8000 || w < 0.55*8000 {
		t.Errorf("ac_power_w %v, want clipped at 55.5 %% of 8000 W", w)
	}
	if !pv.Fields["state"].Equal(payload.String("throttled")) {
		t.Errorf("state %v, want throttled", pv.Fields["state"])
	}
}

func TestDiscoversOnceAndAgainAfterErrors(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 8, Base: 40000})
	d := r.device(t, "inv-8", 8, nil)
	stats := inv.Unit().Stats
	poll(t, d)
	n := stats().Requests
	poll(t, d)
	// 103 and 160 lie back to back (102 registers, one read); 123 is apart.
	if got := stats().Requests - n; got != 2 {
		t.Errorf("a poll after discovery took %d transactions, want 2", got)
	}
	if d.Info() == nil || d.Info().Base != 40000 {
		t.Fatalf("info %+v", d.Info())
	}
	inv.Unit().SetOffline(true)
	if _, err := d.Poll(context.Background()); !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("poll of an offline unit: %v, want a timeout", err)
	}
	if d.Info() != nil {
		t.Error("a failed poll keeps the old map; the next poll must discover again")
	}
	inv.Unit().SetOffline(false)
	var err error
	for range 100 { // the bus backs the unit off for a while after the timeout
		if _, err = d.Poll(context.Background()); err == nil {
			break
		}
		if !errors.Is(err, drivers.ErrTimeout) {
			t.Fatal(err)
		}
		inv.Advance(0)
		sleep()
	}
	if err != nil || d.Info() == nil {
		t.Fatalf("no recovery: %v", err)
	}
}

func TestLargeModelsAreReadInChunksOf125(t *testing.T) {
	r := newRig(t, fastBaud)
	// 160 with 12 modules is 250 registers; with 103 before it, 302.
	inv := r.inverter(t, sunspecsim.Config{Unit: 11, Base: 40000, Chain: []sunspecsim.Model{{ID: 1}, {ID: 103}, {ID: 160, Repeats: 12}}})
	d := r.device(t, "inv-11", 11, nil)
	poll(t, d)
	n := inv.Unit().Stats().Requests
	recs := poll(t, d)
	if got := inv.Unit().Stats().Requests - n; got != 3 {
		t.Errorf("302 registers took %d reads, want 3", got)
	}
	mp := find(recs, "pv_mppt")
	if len(mp) != 12 || mp[11].Tags["module"] != "12" || mp[11].Fields["dc_power_w"].Float() <= 0 {
		t.Errorf("modules %d, last %+v", len(mp), mp[len(mp)-1])
	}
}

func TestNewValidatesSpec(t *testing.T) {
	info, _ := drivers.Lookup("sunspec")
	if info.Measurement != "pv" {
		t.Errorf("measurement %q", info.Measurement)
	}
	r := newRig(t, fastBaud)
	env := drivers.Env{Bus: r.bus.Device("x")}
	for _, c := range []struct {
		spec drivers.Spec
		env  drivers.Env
		says string
	}{
		{drivers.Spec{ID: "a", Unit: 0}, env, "unit 0"},
		{drivers.Spec{ID: "a", Unit: 1}, drivers.Env{}, "no bus"},
		{drivers.Spec{ID: "a", Unit: 1, Options: map[string]any{"bse": 40000}}, env, `unknown option "bse" (did you mean base?)`},
		{drivers.Spec{ID: "a", Unit: 1, Options: map[string]any{"base": "forty"}}, env, "option base"},
	} {
		if _, err := info.New(c.spec, c.env); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("New(%+v): %v, want an error saying %q", c.spec, err, c.says)
		}
	}
}

// Every numeric point of the models, set to the not-implemented value the
// simulator writes for its type, decodes as missing; the same registers
// with a value decode.
func TestNotImplementedValuesDecodeAsMissing(t *testing.T) {
	for _, id := range []uint16{1, 103, 113, 120, 121, 122, 123, 160} {
		def, _ := sunspec.Definition(id)
		total := def.FixedLen
		if def.Group != nil {
			total += def.Group.Len
		}
		regs := make([]uint16, total)
		regs[0], regs[1] = id, uint16(total-2)
		fill := func(base int, pts []sunspec.Point) {
			for _, p := range pts[:] {
				if p.Name == "ID" && base == 0 || p.Name == "L" || p.Type == sunspec.TypeString {
					continue
				}
				copy(regs[base+p.Offset:], sunspecsim.NotImplemented(p.Type, p.Size))
			}
		}
		fill(0, def.Points)
		if def.Group != nil {
			fill(def.FixedLen, def.Group.Points)
			if n, ok := def.Point("N"); ok {
				regs[n.Offset] = 1
			}
		}
		b, err := sunspec.DecodeBlock(40002, regs)
		if err != nil {
			t.Fatalf("model %d: %v", id, err)
		}
		check := func(p sunspec.Point, get func() (float64, error)) {
			if p.Name == "ID" || p.Name == "L" || p.Name == "N" || p.Type == sunspec.TypeString || p.Type == sunspec.TypePad {
				return
			}
			if v, err := get(); !errors.Is(err, sunspec.ErrNotImplemented) {
				t.Errorf("model %d point %s (%s): %v, %v; want ErrNotImplemented", id, p.Name, p.Type, v, err)
			}
		}
		for _, p := range def.Points {
			check(p, func() (float64, error) { return b.Value(p.Name) })
		}
		if def.Group != nil {
			for _, p := range def.Group.Points {
				check(p, func() (float64, error) { return b.GroupValue(0, p.Name) })
			}
		}
	}
	b, err := sunspec.DecodeBlock(0, []uint16{64000, 0})
	if err != nil || b.Def != nil || b.Name() != "model_64000" {
		t.Errorf("unknown model: %+v, %v", b, err)
	}
	if _, err := b.Value("W"); err == nil {
		t.Error("a point of an unknown model decodes")
	}
	for _, bad := range [][]uint16{{}, {103}, {103, 50}, {0xFFFF, 0}, {160, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := sunspec.DecodeBlock(7, bad); err == nil || !strings.Contains(err.Error(), "at 7") {
			t.Errorf("DecodeBlock(%v): %v, want an error naming the address", bad, err)
		}
	}
}

func sleep() { time.Sleep(20 * time.Millisecond) }

// The simulator, like a device, accepts a master's writes on RW points only.
func TestSimulatorRefusesWritesToReadOnlyRegisters(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 12, Base: 40000})
	c := modbus.NewClient(r.bus.Device("raw"), 12, "raw")
	ctx := context.Background()
	m103, _ := inv.Addr(103)
	m123, _ := inv.Addr(123)
	def, _ := sunspec.Definition(123)
	pct, _ := def.Point("WMaxLimPct")
	sf, _ := def.Point("WMaxLimPct_SF")
	for _, tc := range []struct {
		addr uint16
		vals []uint16
		want error
	}{
		{m103 + 14, []uint16{1}, modbus.ErrIllegalDataAddress},                // W
		{m123 + uint16(sf.Offset), []uint16{0}, modbus.ErrIllegalDataAddress}, // a scale factor
		{m123 + uint16(pct.Offset), []uint16{1001}, modbus.ErrIllegalDataValue},
		{m123 + uint16(pct.Offset), []uint16{250}, nil},
	} {
		err := c.WriteMultipleRegisters(ctx, tc.addr, tc.vals)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("write %v at %d: %v, want %v", tc.vals, tc.addr, err, tc.want)
		}
	}
	b, _ := inv.Block(123)
	if v, _ := b.Value("WMaxLimPct"); v != 25 {
		t.Errorf("WMaxLimPct %v, want 25", v)
	}
}

// A fault of one MPPT input (a blown string fuse) raises a fault tagged with
// the module and an alert; the other input goes on producing.
func TestModuleFaultRaisesEventForThatModule(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 13, Base: 40000, Chain: []sunspecsim.Model{{ID: 1}, {ID: 103}, {ID: 160, Repeats: 3}}})
	d := r.device(t, "inv-13", 13, nil)
	poll(t, d)
	if ev := d.TakeEvents(); len(ev) != 0 {
		t.Fatalf("events %v before any fault", ev)
	}
	if err := inv.InjectModuleFault(1, 1<<12); err != nil { // BLOWN_FUSE on the second input
		t.Fatal(err)
	}
	recs := poll(t, d)
	mp := find(recs, "pv_mppt")
	if len(mp) != 3 || mp[1].Fields["dc_power_w"].Float() != 0 || mp[0].Fields["dc_power_w"].Float() <= 0 || mp[2].Fields["dc_power_w"].Float() <= 0 {
		t.Errorf("module power %v %v %v, want the second input at 0 and the others producing", mp[0].Fields["dc_power_w"], mp[1].Fields["dc_power_w"], mp[2].Fields["dc_power_w"])
	}
	if st := find(recs, "pv")[0].Fields["state"]; !st.Equal(payload.String("mppt")) {
		t.Errorf("inverter state %v, want mppt: one input down does not stop it", st)
	}
	ev := d.TakeEvents()
	if len(ev) != 2 {
		t.Fatalf("events %+v, want a fault and an alert", ev)
	}
	f, a := ev[0], ev[1]
	if f.Measurement != "fault" || f.Tags["code"] != "blown_fuse" || f.Tags["module"] != "2" || f.Tags["device"] != "inv-13" || f.Fields["state"].Str() != "active" {
		t.Errorf("fault %+v", f)
	}
	if a.Measurement != "alert" || !strings.Contains(a.Fields["message"].Str(), "module 2 reports BLOWN_FUSE (DCEvt bit 12)") {
		t.Errorf("alert %+v", a)
	}
	inv.ClearModuleFault(1)
	poll(t, d)
	ev = d.TakeEvents()
	if len(ev) != 1 || ev[0].Tags["code"] != "blown_fuse" || ev[0].Fields["state"].Str() != "cleared" {
		t.Errorf("events %+v, want the fuse fault cleared", ev)
	}
}

// pointKey is what InfluxDB keys a point on: measurement, tags and time.
// Two events with the same key overwrite each other.
func pointKey(r payload.Record) string {
	keys := make([]string, 0, len(r.Tags))
	for k, v := range r.Tags {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return r.Measurement + "," + strings.Join(keys, ",") + " " + r.Time.Format(time.RFC3339Nano)
}

// One poll that raises several alerts at once (operating state FAULT, two
// Evt1 bits, the same DCEvt bit on two modules) must give each of them,
// and each fault event, its own InfluxDB point.
func TestAlertsOfOnePollAreDistinctPoints(t *testing.T) {
	r := newRig(t, fastBaud)
	inv := r.inverter(t, sunspecsim.Config{Unit: 14, Base: 40000, Chain: []sunspecsim.Model{{ID: 1}, {ID: 103}, {ID: 160, Repeats: 2}}})
	d := r.device(t, "inv-14", 14, nil)
	poll(t, d)
	d.TakeEvents()
	inv.InjectFault(1<<0 | 1<<7) // ground fault, over temperature
	for m := range 2 {
		if err := inv.InjectModuleFault(m, 1<<0); err != nil { // DCEvt GROUND_FAULT on both inputs
			t.Fatal(err)
		}
	}
	poll(t, d)
	ev := d.TakeEvents()
	seen := map[string]payload.Record{}
	alerts := 0
	for _, e := range ev {
		if e.Measurement == "alert" {
			alerts++
			if err := payload.CheckSchema(&e); err != nil {
				t.Error(err)
			}
		}
		k := pointKey(e)
		if prev, dup := seen[k]; dup {
			t.Errorf("two events share the point %s:\n  %v\n  %v", k, prev.Fields["message"], e.Fields["message"])
		}
		seen[k] = e
	}
	if alerts != 5 {
		t.Fatalf("%d alerts, want 5 (FAULT, 2 Evt1 bits, 2 DCEvt bits); events %+v", alerts, ev)
	}
	codes := map[string]bool{}
	for _, e := range ev {
		if e.Measurement == "alert" {
			codes[e.Tags["code"]+"/"+e.Tags["module"]] = true
		}
	}
	for _, want := range []string{"operating_state/", "evt1.ground_fault/", "evt1.over_temp/", "dcevt.ground_fault/1", "dcevt.ground_fault/2"} {
		if !codes[want] {
			t.Errorf("no alert with code/module %s; have %v", want, codes)
		}
	}
}
