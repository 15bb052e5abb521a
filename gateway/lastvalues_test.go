package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
)

// An inverter yields its pv record and one pv_mppt record per module in one
// poll: the status page shows each record on its own, so the modules' DC
// values do not overwrite the inverter's totals.
func TestLastValuesKeepEachRecord(t *testing.T) {
	g := &Gateway{}
	d := &device{spec: drivers.Spec{ID: "inv-1", Driver: "sunspec"}, state: "ok"}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	recs := []payload.Record{
		{Measurement: "pv", Tags: map[string]string{"device": "inv-1"}, Time: t0,
			Fields: map[string]payload.Value{"ac_power_w": payload.Float(4800), "dc_power_w": payload.Float(5000)}},
		{Measurement: "pv_mppt", Tags: map[string]string{"device": "inv-1", "module": "1"}, Time: t0,
			Fields: map[string]payload.Value{"dc_power_w": payload.Float(2600)}},
		{Measurement: "pv_mppt", Tags: map[string]string{"device": "inv-1", "module": "2"},
			Fields: map[string]payload.Value{"dc_power_w": payload.Float(2400)}},
	}
	g.deviceOK(context.Background(), d, t0, recs, quietLogger())
	b, err := json.Marshal(d.lastValues())
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Measurement string             `json:"measurement"`
		Tags        map[string]string  `json:"tags"`
		Fields      map[string]float64 `json:"fields"`
		Time        time.Time          `json:"time"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("last_values %s: %v", b, err)
	}
	want := map[string]float64{"pv/": 5000, "pv_mppt/1": 2600, "pv_mppt/2": 2400}
	if len(got) != len(want) {
		t.Fatalf("last_values %s: want %d records", b, len(want))
	}
	for _, r := range got {
		k := r.Measurement + "/" + r.Tags["module"]
		if w, ok := want[k]; !ok || r.Fields["dc_power_w"] != w || !r.Time.Equal(t0) {
			t.Errorf("record %s: dc_power_w %v at %v, want %v at %v", k, r.Fields["dc_power_w"], r.Time, w, t0)
		}
	}
	if got[0].Measurement != "pv" || got[0].Fields["ac_power_w"] != 4800 {
		t.Errorf("the inverter's record: %+v", got[0])
	}
}
