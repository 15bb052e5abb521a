package modbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
)

// A geomagnetic sensor whose reply says the battery holds 645 V (raw
// 64500, 0.01 V): the profile's range is 0..4.2 V, so the reading is not
// published; the device counts it and raises one fault naming the field
// and the value, not one per poll, and clears it when the value is
// plausible again.
func TestImplausibleReadingIsAFault(t *testing.T) {
	ctx := context.Background()
	b := newBank(3, 6)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dev, err := New(drivers.Spec{ID: "bay-3", Driver: DriverName, Bus: "rs485-1", Unit: 3, Profile: "geomagnetic-bay",
		Tags: map[string]string{"lot": "north"}}, drivers.Env{Bus: b, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	copy(b.input, []uint16{1, 1, 2, 3, 64500, 0xFFB5})
	recs, err := dev.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := recs[0].Fields["battery_v"]; ok {
		t.Errorf("implausible battery_v published as %v", v)
	}
	if recs[0].Fields["rssi_dbm"] != payload.Float(-75) || recs[0].Fields["occupied"] != payload.Bool(true) {
		t.Errorf("plausible fields of the same reply: %v", recs[0].Fields)
	}
	ev := dev.TakeEvents()
	if len(ev) != 1 {
		t.Fatalf("%d events, want 1 fault: %v", len(ev), ev)
	}
	f := ev[0]
	if f.Measurement != "fault" || f.Tags["code"] != FaultImplausible || f.Tags["field"] != "battery_v" ||
		f.Tags["device"] != "bay-3" || f.Tags["lot"] != "north" || f.Fields["state"] != payload.String("active") ||
		f.Fields["value"] != payload.Float(645) || f.Fields["count"] != payload.Int(1) || !f.Time.Equal(now) {
		t.Errorf("fault event %+v", f)
	}
	if msg := f.Fields["message"].Str(); !strings.Contains(msg, "battery_v 645") || !strings.Contains(msg, "0..4.2") {
		t.Errorf("fault message %q does not name the field, value and range", msg)
	}
	if _, err := payload.AppendRecord(nil, &f); err != nil {
		t.Errorf("fault event does not encode: %v", err)
	}

	// Still implausible: counted, no new event until FaultEvery passed.
	for range 5 {
		now = now.Add(time.Second)
		if _, err := dev.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ev := dev.TakeEvents(); len(ev) != 0 {
		t.Errorf("%d more events within FaultEvery: %v", len(ev), ev)
	}
	if n := dev.Report()["implausible_readings"]; n != uint64(6) {
		t.Errorf("implausible_readings %v, want 6", n)
	}
	now = now.Add(FaultEvery)
	dev.Poll(ctx)
	ev = dev.TakeEvents()
	if len(ev) != 1 || ev[0].Fields["count"] != payload.Int(6) || ev[0].Fields["state"] != payload.String("active") {
		t.Errorf("after FaultEvery: %v, want one active fault counting the 6 readings left out", ev)
	}

	// Plausible again: published, and the fault is cleared once.
	b.input[4] = 355
	recs, _ = dev.Poll(ctx)
	if recs[0].Fields["battery_v"] != payload.Float(3.55) {
		t.Errorf("battery_v %v after recovery, want 3.55", recs[0].Fields["battery_v"])
	}
	ev = dev.TakeEvents()
	if len(ev) != 1 || ev[0].Fields["state"] != payload.String("cleared") || ev[0].Tags["field"] != "battery_v" {
		t.Errorf("recovery events %v, want one cleared fault", ev)
	}
	dev.Poll(ctx)
	if ev := dev.TakeEvents(); len(ev) != 0 {
		t.Errorf("events while plausible: %v", ev)
	}
}

// The limits hold at their edges and apply to int outputs too.
func TestPlausibleEdges(t *testing.T) {
	p, err := LoadProfile("p.yaml", []byte("name: p\nmeasurement: m\nblocks: [{function: input, address: 0, count: 2}]\n"+
		"fields:\n  - {name: a, address: 0, type: int16, output: int, min: -5, max: 5}\n  - {name: b, address: 1, type: uint16, scale: 0.5, min: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words      []uint16
		a, b       bool // present
		implausibl int
	}{
		{[]uint16{5, 2}, true, true, 0},
		{[]uint16{0xFFFB, 1000}, true, true, 0}, // -5; no max on b
		{[]uint16{6, 1}, false, false, 2},       // 6 > 5; 0.5 < 1
	} {
		dst := map[string]payload.Value{}
		issues := p.DecodeBlock(0, c.words, dst, nil)
		_, a := dst["a"]
		_, b := dst["b"]
		if a != c.a || b != c.b || len(issues) != c.implausibl {
			t.Errorf("%v: a %v b %v issues %v", c.words, a, b, issues)
		}
		for _, is := range issues {
			if is.Reason != ReasonImplausible {
				t.Errorf("issue %+v", is)
			}
		}
	}
}
