package web

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// A fleet that rebuilds a gateway's parking state from what LastParking
// reads back from InfluxDB counts every lot and zone as the fleet that
// derived it from the records as they came: bays changing several times,
// a bay moving zone, a sensor fault, a device offline and one back online,
// a lot counted at its lanes. The rebuilt state replaces a stale one, and
// another gateway's records stay out.
func TestLastParkingRebuildsTheCounts(t *testing.T) {
	influx, db := testenv.NewDatabase(t)
	t0 := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	bay := func(n int, zone string, occupied bool, s int) payload.Record {
		id := fmt.Sprintf("b%d", n)
		tags := map[string]string{"device": id, "bay": id, "lot": "north"}
		if zone != "" {
			tags["zone"] = zone
		}
		return payload.Record{Measurement: "parking_bay", Tags: tags, Fields: map[string]payload.Value{"occupied": payload.Bool(occupied)}, Time: at(s)}
	}
	faulty := bay(6, "a", true, 20)
	faulty.Fields["sensor_fault"] = payload.Bool(true)
	fault := func(dev, state string, s int) payload.Record {
		return payload.Record{Measurement: "fault", Tags: map[string]string{"device": dev}, Fields: map[string]payload.Value{"state": payload.String(state)}, Time: at(s)}
	}
	lane := payload.Record{Measurement: "lane", Tags: map[string]string{"event": "passage", "lot": "south"},
		Fields: map[string]payload.Value{"occupied": payload.Int(17), "capacity": payload.Int(40)}, Time: at(30)}
	laneOld := lane
	laneOld.Fields = map[string]payload.Value{"occupied": payload.Int(3), "capacity": payload.Int(40)}
	laneOld.Time = at(5)
	recs := []payload.Record{
		bay(1, "a", true, 1), bay(2, "a", true, 2), bay(3, "b", false, 3), bay(4, "b", true, 4), bay(5, "b", true, 5),
		laneOld, bay(1, "a", false, 10), bay(3, "a", true, 11), // b3 moved to zone a
		faulty, fault("b4", "offline", 21), fault("b5", "offline", 22), fault("b5", "online", 23),
		{Measurement: "fault", Tags: map[string]string{"device": "b2"}, Fields: map[string]payload.Value{"state": payload.String("crc errors")}, Time: at(24)},
		lane,
	}
	live := fleet.New(time.Minute, nil)
	var lines []byte
	var keys influxw.Keys
	var derived []payload.Record
	for i := range recs {
		b := &payload.Batch{Site: "s", Gateway: "g", Records: recs[i : i+1]}
		derived = live.Derive(derived[:0], b)
		for _, r := range append(recs[i:i+1:i+1], derived...) {
			lines = influxw.AppendLine(lines, &keys, "s", "g", &r)
			lines = append(lines, '\n')
		}
	}
	other := bay(1, "a", true, 50) // another gateway's bay of the same name
	lines = influxw.AppendLine(lines, &keys, "s", "other", &other)
	lines = append(lines, '\n')
	w, err := influxw.New(influxw.Config{URL: influx.URL, Bucket: db})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(context.Background(), lines); err != nil {
		t.Fatal(err)
	}

	got, err := (&Influx{URL: influx.URL, DB: db}).LastParking(context.Background(), []string{"s/g", "s/none"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["s/none"]; ok || len(got["s/g"]) == 0 {
		t.Fatalf("records per gateway: %v", got)
	}
	rebuilt := fleet.New(time.Minute, nil)
	rebuilt.Derive(nil, &payload.Batch{Site: "s", Gateway: "g", Records: []payload.Record{bay(9, "c", true, 100)}}) // stale
	rebuilt.RestoreParking("s", "g", got["s/g"])
	for _, lz := range [][2]string{{"north", "a"}, {"north", "b"}, {"north", "c"}, {"south", ""}} {
		c1, o1, u1, f1 := live.Lot("s", "g", lz[0], lz[1])
		c2, o2, u2, f2 := rebuilt.Lot("s", "g", lz[0], lz[1])
		if c1 != c2 || o1 != o2 || u1 != u2 || f1 != f2 {
			t.Errorf("lot %s zone %q: rebuilt capacity %d occupied %d unknown %d free %d, derived live %d %d %d %d",
				lz[0], lz[1], c2, o2, u2, f2, c1, o1, u1, f1)
		}
	}
	if _, o, u, _ := rebuilt.Lot("s", "g", "north", "a"); o != 2 || u != 1 {
		t.Errorf("zone a: occupied %d unknown %d, want b2 and b3 occupied, b6 unknown (b1 free)", o, u)
	}
	if _, o, u, _ := rebuilt.Lot("s", "g", "north", "b"); o != 1 || u != 1 {
		t.Errorf("zone b: occupied %d unknown %d, want b5 occupied (back online) and b4 unknown (offline)", o, u)
	}
	if c, o, _, _ := rebuilt.Lot("s", "g", "south", ""); c != 40 || o != 17 {
		t.Errorf("south: capacity %d occupied %d, want the newest lane count 17 of 40", c, o)
	}
}
