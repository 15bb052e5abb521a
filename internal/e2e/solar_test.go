package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
	"github.com/luling-edge/luling/internal/ptypair"
)

// A SunSpec inverter on its own RS-485 bus: its readings reach InfluxDB's
// pv and pv_mppt measurements with scale factors applied, and a point the
// inverter does not implement is absent, not zero.
func TestSolarToInfluxDB(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	srv, err := modbussim.NewServer(modbussim.Config{Name: "pv", Line: modbussim.Line{Baud: 19200, CharBits: 11}})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := sunspecsim.New(srv, sunspecsim.Config{Unit: 7, Base: 40000})
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.Set(103, -1, "W", 4321); err != nil {
		t.Fatal(err)
	}
	if err := inv.Set(103, -1, "DCV", 612.3); err != nil {
		t.Fatal(err)
	}
	if err := inv.SetNotImplemented(103, -1, "DCA"); err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyPV"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, pair.Master) }()
	t.Cleanup(func() { cancel(); pair.Close(); <-served })

	w := newWorld(t, worldOptions{bays: 1, buses: 1, poll: 500 * time.Millisecond,
		moreBuses:   fmt.Sprintf("  - {name: rs485-pv, port: %s, baud: 19200, parity: even, timeout: 300ms}\n", pair.Path()),
		moreDevices: "  - {id: inv-1, driver: sunspec, bus: rs485-pv, unit: 7, poll: 1s, tags: {roof: east}}\n"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		pv, err := w.influx.Query(w.db, `SELECT * FROM "pv" WHERE "device"='inv-1'`)
		if err != nil {
			t.Fatal(err)
		}
		mppt, err := w.influx.Query(w.db, `SELECT * FROM "pv_mppt" WHERE "device"='inv-1' GROUP BY "module"`)
		if err != nil {
			t.Fatal(err)
		}
		if len(pv) == 1 && len(mppt) == 2 {
			row := pv[0].Rows()[0]
			if got := num(row["ac_power_w"]); got != 4321 {
				t.Errorf("ac_power_w = %v, want 4321", row["ac_power_w"])
			}
			if got := num(row["dc_voltage_v"]); got != 612.3 {
				t.Errorf("dc_voltage_v = %v, want 612.3 (raw 6123 with DCV_SF -1)", row["dc_voltage_v"])
			}
			if v, ok := row["dc_current_a"]; ok && v != nil {
				t.Errorf("dc_current_a = %v: the inverter does not implement DCA, the field must be absent", v)
			}
			if row["model"] != "103" || row["roof"] != "east" || row["site"] != "e2e" {
				t.Errorf("pv tags: %v", row)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pv: %d series, pv_mppt: %d series (want 1 and 2)", len(pv), len(mppt))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// num reads a JSON number, decoded with or without UseNumber.
func num(v any) float64 {
	switch n := v.(type) {
	case json.Number:
		f, _ := n.Float64()
		return f
	case float64:
		return n
	}
	return 0
}
