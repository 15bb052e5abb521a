package fleet

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// A lot counted at its lanes gets its whole-lot point from the count the
// lane events carry (source counting); with bay sensors in one of its
// zones the whole lot is "combined" and the zone stays "sensors". A count
// older than the last one applied, or a lane event without one, changes
// nothing.
func TestParkingCountedLot(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	lane := func(event string, occ, s int) payload.Record {
		r := payload.Record{Measurement: "lane", Tags: map[string]string{"lane": "p1-in", "lot": "P", "direction": "in", "event": event},
			Fields: map[string]payload.Value{"state": payload.String("open")}, Time: at(s)}
		if occ >= 0 {
			r.Fields["occupied"], r.Fields["capacity"], r.Fields["free"] = payload.Int(int64(occ)), payload.Int(10), payload.Int(int64(10-occ))
		}
		return r
	}
	bay := func(occ bool, s int) payload.Record {
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": "b1", "bay": "1", "lot": "P", "zone": "ev"},
			Fields: map[string]payload.Value{"occupied": payload.Bool(occ)}, Time: at(s)}
	}
	points := func(recs []payload.Record) string {
		var out []string
		for _, r := range recs {
			if err := payload.CheckSchema(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s/%s@%d:%d/%d/%d:%s", r.Tags["lot"], r.Tags["zone"], r.Time.Unix()-t0.Unix(),
				r.Fields["capacity"].Int(), r.Fields["occupied"].Int(), r.Fields["free"].Int(), r.Fields["source"].Str()))
		}
		return strings.Join(out, " ")
	}
	var p Parking
	for i, step := range []struct {
		recs []payload.Record
		want string
	}{
		{[]payload.Record{lane("opening", -1, 1)}, ""},
		{[]payload.Record{lane("passed", 4, 2)}, "P/@2:10/4/6:counting"},
		{[]payload.Record{lane("passed", 3, 1)}, ""}, // older: a redelivery
		{[]payload.Record{bay(true, 3)}, "P/ev@3:1/1/0:sensors"},
		{[]payload.Record{lane("tailgate", 12, 4)}, "P/@4:10/12/0:combined"},
		{[]payload.Record{lane("count_set", 0, 5)}, "P/@5:10/0/10:combined"},
	} {
		if got := points(p.Apply(nil, step.recs)); got != step.want {
			t.Errorf("step %d: points %q, want %q", i, got, step.want)
		}
	}
	if c, o, u, f := p.Lot("P", ""); c != 10 || o != 0 || u != 0 || f != 10 {
		t.Errorf("Lot(P) = %d/%d/%d/%d", c, o, u, f)
	}
	if s := p.Source("P", "ev"); s != SourceSensors {
		t.Errorf("zone source %s", s)
	}
}

// in_total marks what a site's total sums: whole-lot points and the zones
// of lots nothing counts. A lot whose zones reported before its first
// count gets its zones' points again at that count, now out of the total.
func TestParkingInTotal(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	bay := func(dev, zone string, s int) payload.Record {
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": dev, "bay": dev, "lot": "P", "zone": zone},
			Fields: map[string]payload.Value{"occupied": payload.Bool(true)}, Time: t0.Add(time.Duration(s) * time.Second)}
	}
	count := payload.Record{Measurement: "lane", Tags: map[string]string{"lane": "p-in", "lot": "P", "direction": "in", "event": "passed"},
		Fields: map[string]payload.Value{"occupied": payload.Int(7), "capacity": payload.Int(20), "free": payload.Int(13)}, Time: t0.Add(3 * time.Second)}
	show := func(recs []payload.Record) string {
		var out []string
		for _, r := range recs {
			if err := payload.CheckSchema(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s/%s:%s:%v", r.Tags["lot"], r.Tags["zone"], r.Fields["source"].Str(), r.Fields["in_total"].Bool()))
		}
		return strings.Join(out, " ")
	}
	var p Parking
	if got, want := show(p.Apply(nil, []payload.Record{bay("b1", "west", 1), bay("b2", "east", 2)})), "P/west:sensors:true P/east:sensors:true"; got != want {
		t.Fatalf("sensor zones: %q, want %q", got, want)
	}
	if got, want := show(p.Apply(nil, []payload.Record{count})), "P/:combined:true P/east:sensors:false P/west:sensors:false"; got != want {
		t.Fatalf("first count: %q, want %q", got, want)
	}
	count.Time = count.Time.Add(time.Second)
	if got, want := show(p.Apply(nil, []payload.Record{count, bay("b3", "west", 5)})), "P/:combined:true P/west:sensors:false"; got != want {
		t.Fatalf("later count and bay: %q, want %q", got, want)
	}
}
