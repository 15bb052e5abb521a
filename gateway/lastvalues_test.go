package gateway

import (
	"context"
	"encoding/json"
	"reflect"
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

// A reading equal to the last one keeps the last one's fields map (which
// the filter usually holds as the last reported too), so an unchanging
// device holds one map, not two; a changed reading is kept as it came.
// Neither allocates.
func TestLastValuesKeepUnchangedMaps(t *testing.T) {
	g := &Gateway{}
	d := &device{spec: drivers.Spec{ID: "bay-1", Driver: "modbus"}, state: "ok"}
	tags := map[string]string{"device": "bay-1"}
	reading := func(dist float64) []payload.Record {
		return []payload.Record{{Measurement: "parking_bay", Tags: tags,
			Fields: map[string]payload.Value{"occupied": payload.Bool(false), "distance_cm": payload.Float(dist)}}}
	}
	same := func(a, b map[string]payload.Value) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	first, again, moved := reading(250), reading(250), reading(180)
	g.deviceOK(context.Background(), d, t0, first, quietLogger())
	g.deviceOK(context.Background(), d, t0.Add(time.Second), again, quietLogger())
	if !same(d.lastRecs[0].Fields, first[0].Fields) {
		t.Error("an unchanged reading replaced the kept fields map")
	}
	if !d.lastAt.Equal(t0.Add(time.Second)) {
		t.Errorf("last values observed at %v, want the latest poll's time", d.lastAt)
	}
	g.deviceOK(context.Background(), d, t0.Add(2*time.Second), moved, quietLogger())
	if !same(d.lastRecs[0].Fields, moved[0].Fields) || d.lastRecs[0].Fields["distance_cm"].Float() != 180 {
		t.Errorf("a changed reading was not kept: %v", d.lastRecs[0].Fields)
	}
	g.deviceOK(context.Background(), d, t0.Add(3*time.Second), nil, quietLogger())
	if len(d.lastRecs) != 1 {
		t.Errorf("a poll without records dropped the last values: %v", d.lastRecs)
	}
	if n := testing.AllocsPerRun(50, func() {
		d.mu.Lock()
		d.keepLast(again, t0)
		d.keepLast(moved, t0)
		d.mu.Unlock()
	}); n != 0 {
		t.Errorf("keeping the last values allocates %v times, want 0", n)
	}
}
