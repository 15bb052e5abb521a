package fleet

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// A bay whose sensor fails, or that the birth lists but that never
// reported, is unknown: counted neither free nor occupied. The lot reports
// capacity/occupied/unknown/free.
func TestParkingUnknownBays(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	bay := func(dev string, occ bool, s int) payload.Record {
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": dev, "bay": "1", "lot": "L"},
			Fields: map[string]payload.Value{"occupied": payload.Bool(occ)}, Time: at(s)}
	}
	fault := func(dev, state string, s int) payload.Record {
		return payload.Record{Measurement: "fault", Tags: map[string]string{"device": dev, "driver": "modbus"},
			Fields: map[string]payload.Value{"state": payload.String(state), "message": payload.String("x")}, Time: at(s)}
	}
	lots := func(recs []payload.Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s@%d:%d/%d/%d/%d", r.Tags["lot"], r.Time.Unix()-t0.Unix(), r.Fields["capacity"].Int(),
				r.Fields["occupied"].Int(), r.Fields["unknown"].Int(), r.Fields["free"].Int()))
		}
		return strings.Join(out, " ")
	}
	var p Parking
	p.SetCapacity([]payload.DeviceInfo{{ID: "a", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}},
		{ID: "b", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}},
		{ID: "c", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}}})
	steps := []struct {
		recs []payload.Record
		want string // lot@s:capacity/occupied/unknown/free
	}{
		// c never reports: unknown, not free.
		{[]payload.Record{bay("a", false, 1), bay("b", false, 1)}, "L@1:3/0/2/1 L@1:3/0/1/2"},
		// b's sensor stops answering.
		{[]payload.Record{fault("b", "offline", 2)}, "L@2:3/0/2/1"},
		{[]payload.Record{fault("b", "offline", 3)}, ""},            // still failing: no change
		{[]payload.Record{fault("a", "offline", 0)}, ""},            // older than a's last record
		{[]payload.Record{fault("z", "offline", 4)}, ""},            // no bay of this gateway
		{[]payload.Record{fault("b", "online", 5)}, "L@5:3/0/1/2"},  // answers again, last state stands
		{[]payload.Record{fault("b", "offline", 6)}, "L@6:3/0/2/1"}, // fails again
		{[]payload.Record{bay("b", true, 7)}, "L@7:3/1/1/1"},        // a newer record: it answers
		{[]payload.Record{bay("c", true, 8)}, "L@8:3/2/0/1"},        // c reports at last
		{[]payload.Record{fault("a", "offline", 9), fault("c", "offline", 9)}, "L@9:3/2/1/0 L@9:3/1/2/0"},
	}
	for i, s := range steps {
		if got := lots(p.Apply(nil, s.recs)); got != s.want {
			t.Errorf("step %d: got %q, want %q", i, got, s.want)
		}
	}
	if c, o, u, f := p.Lot("L", ""); c != 3 || o != 1 || u != 2 || f != 0 {
		t.Errorf("Lot = %d/%d/%d/%d, want 3/1/2/0", c, o, u, f)
	}
}

// A bay whose sensor reports its own fault (sensor_fault true) is unknown
// until it reports without the fault.
func TestParkingSensorFaultIsUnknown(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	bay := func(dev string, occ, fault bool, s int) payload.Record {
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": dev, "bay": dev, "lot": "L"},
			Fields: map[string]payload.Value{"occupied": payload.Bool(occ), "sensor_fault": payload.Bool(fault)},
			Time:   t0.Add(time.Duration(s) * time.Second)}
	}
	var p Parking
	p.Apply(nil, []payload.Record{bay("a", false, false, 1), bay("b", false, false, 1), bay("c", true, false, 1)})
	check := func(step string, c, o, u, f int) {
		t.Helper()
		if gc, gO, gu, gf := p.Lot("L", ""); gc != c || gO != o || gu != u || gf != f {
			t.Errorf("%s: Lot = %d/%d/%d/%d, want %d/%d/%d/%d", step, gc, gO, gu, gf, c, o, u, f)
		}
	}
	check("all report", 3, 1, 0, 2)
	if got := p.Apply(nil, []payload.Record{bay("b", false, true, 2)}); len(got) != 1 || got[0].Fields["unknown"].Int() != 1 {
		t.Errorf("sensor fault: %v", got)
	}
	check("b reports a fault", 3, 1, 1, 1)
	p.Apply(nil, []payload.Record{bay("b", false, true, 3)}) // still faulty: no change
	check("b still faulty", 3, 1, 1, 1)
	p.Apply(nil, []payload.Record{bay("b", true, false, 4)})
	check("b well again", 3, 2, 0, 1)
}
