package sunspecsim_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
)

func newInverter(t *testing.T, cfg sunspecsim.Config) *sunspecsim.Inverter {
	t.Helper()
	srv, err := modbussim.NewServer(modbussim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := sunspecsim.New(srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestLayoutFollowsDefinitions(t *testing.T) {
	inv := newInverter(t, sunspecsim.Config{Unit: 3, Base: 50000, OmitEndLength: true})
	h, err := inv.Unit().ReadHolding(50000, 2)
	if err != nil || h[0] != 0x5375 || h[1] != 0x6E53 {
		t.Fatalf("marker %04X (%v)", h, err)
	}
	addr := 50002
	for _, m := range sunspecsim.DefaultChain {
		b, err := inv.Block(m.ID)
		if err != nil {
			t.Fatalf("model %d: %v", m.ID, err)
		}
		if int(b.Addr) != addr {
			t.Errorf("model %d at %d, want %d", m.ID, b.Addr, addr)
		}
		if b.Repeats() != m.Repeats {
			t.Errorf("model %d: %d repeats, want %d", m.ID, b.Repeats(), m.Repeats)
		}
		addr += b.L + 2
	}
	end, err := inv.Unit().ReadHolding(addr, 1)
	if err != nil || end[0] != 0xFFFF {
		t.Fatalf("end model %v (%v)", end, err)
	}
	if _, err := inv.Unit().ReadHolding(addr+1, 1); err == nil {
		t.Error("the end model has an L register, want it left out")
	}
	common, _ := inv.Block(1)
	if sn, _ := common.String("SN"); sn != "SIM00003" {
		t.Errorf("serial %q", sn)
	}
	if da, _ := common.Uint("DA"); da != 3 {
		t.Errorf("DA %d, want the unit address", da)
	}
	nameplate, _ := inv.Block(120)
	if _, err := nameplate.Value("MaxChaRte"); err == nil {
		t.Error("a battery rating on a PV inverter is implemented, want it not implemented")
	}
}

func TestDayCurveDrivesPowerAndEnergy(t *testing.T) {
	start := time.Date(2026, 6, 1, 4, 0, 0, 0, time.UTC)
	inv := newInverter(t, sunspecsim.Config{Unit: 1, Base: 40000, Start: start, Energy: 1000, RatedPower: 4000})
	value := func(id uint16, name string) float64 {
		t.Helper()
		b, err := inv.Block(id)
		if err != nil {
			t.Fatal(err)
		}
		v, err := b.Value(name)
		if err != nil {
			t.Fatalf("%d.%s: %v", id, name, err)
		}
		return v
	}
	if w := value(103, "W"); w != 0 || value(103, "St") != 2 {
		t.Errorf("at 04:00 power %v state %v, want 0 and SLEEPING", w, value(103, "St"))
	}
	inv.Advance(8 * time.Hour) // to noon
	if w := value(103, "W"); w != math.Round(4000*1.05*0.965) {
		t.Errorf("noon power %v, want %v", w, math.Round(4000*1.05*0.965))
	}
	if e := inv.Energy(); e < 1000+4000*3 || e > 1000+4000*8 {
		t.Errorf("energy %v after a morning", e)
	}
	if wh := value(103, "WH"); wh != math.Floor(inv.Energy()) {
		t.Errorf("WH register %v, want %v", wh, math.Floor(inv.Energy()))
	}
	b, _ := inv.Block(160)
	var dc float64
	for i := range b.Repeats() {
		w, _ := b.GroupValue(i, "DCW")
		dc += w
	}
	if inv := value(103, "DCW"); math.Abs(dc-inv) > 2 {
		t.Errorf("modules give %v W, inverter DC %v W", dc, inv)
	}
	inv.InjectFault(1 << 4)
	if value(103, "St") != 7 || value(103, "W") != 0 {
		t.Error("fault does not stop the inverter")
	}
	blk, _ := inv.Block(103)
	if evt, _ := blk.Uint("Evt1"); evt != 1<<4 {
		t.Errorf("Evt1 %b, want grid disconnect", evt)
	}
	if sunspecsim.Irradiance(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)) != 1 || sunspecsim.Irradiance(time.Date(2026, 6, 1, 19, 0, 0, 0, time.UTC)) != 0 {
		t.Error("day curve")
	}
}

func TestRunCompressesTime(t *testing.T) {
	start := time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)
	inv := newInverter(t, sunspecsim.Config{Unit: 1, Base: 40000, Start: start})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inv.Run(ctx, time.Millisecond, 60_000) }() // a minute of sun per ms
	limit := time.Now().Add(20 * time.Second)
	for inv.Now().Sub(start) < 3*time.Hour {
		if time.Now().After(limit) {
			t.Fatal("the simulated clock does not move")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if step := inv.Now().Sub(start); step%time.Minute != 0 {
		t.Errorf("clock moved %v, want whole ticks of a minute", step)
	}
	if inv.Energy() <= 1_000_000 {
		t.Errorf("energy %v after a morning, want more than the initial 1 MWh", inv.Energy())
	}
}
