package ingest_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestParkingLotFromBaysWithBirthCapacity(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-parking", Group: "cloudd"}, influx.URL, db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	devs := []payload.DeviceInfo{{ID: "inv-1", Driver: "sunspec", Measurement: "pv"}}
	for _, id := range []string{"b1", "b2", "b3"} {
		devs = append(devs, payload.DeviceInfo{ID: id, Driver: "modbus", Measurement: "parking_bay", Tags: map[string]string{"lot": "north", "zone": "a"}})
	}
	g.birth(devs...)
	waitFor(t, 30*time.Second, "birth", func() bool { st, _ := r.fleet.Gateway("harbor", "gw-1"); return st.Online })

	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	first := g.batch(1, payload.Telemetry, bay("b1", "north", "a", true, at(1)))
	g.mustPublish(payload.TopicFor("harbor", "gw-1", payload.Telemetry), first)
	g.send(2, bay("b2", "north", "a", true, at(2)), bay("b2", "north", "a", true, at(3))) // second: no change
	g.send(3, bay("b1", "north", "a", false, at(4)))
	g.send(4, bay("b1", "north", "a", true, at(2)))                             // older than b1's last: ignored
	g.mustPublish(payload.TopicFor("harbor", "gw-1", payload.Telemetry), first) // redelivery of seq 1
	g.send(5, bay("s1", "south", "", true, at(5)))                              // no birth capacity: bays seen
	// b2's sensor stops answering: the gateway's fault event makes it unknown.
	offline := payload.Record{Measurement: "fault", Time: at(6), Tags: map[string]string{"device": "b2", "driver": "modbus"},
		Fields: map[string]payload.Value{"state": payload.String("offline"), "message": payload.String("timeout")}}
	g.mustPublish(payload.TopicFor("harbor", "gw-1", payload.Event), g.batch(6, payload.Event, offline))
	// The redelivery is not written again.
	waitFor(t, 30*time.Second, "6 messages written, 1 skipped", func() bool { s := r.in.Stats(); return s.Written == 6 && s.Skipped == 1 })

	// b3 is listed in the birth but never reports: unknown, not free.
	type lot struct{ t, capacity, occupied, unknown, free int64 }
	got := func(where string) []lot {
		var out []lot
		for _, row := range query(t, influx, db, `SELECT "capacity","occupied","unknown","free" FROM parking_lot WHERE `+where) {
			var l lot
			tn, _ := row["time"].(json.Number).Int64()
			l.t = (tn - t0.UnixNano()) / int64(time.Second)
			l.capacity, _ = row["capacity"].(json.Number).Int64()
			l.occupied, _ = row["occupied"].(json.Number).Int64()
			l.unknown, _ = row["unknown"].(json.Number).Int64()
			l.free, _ = row["free"].(json.Number).Int64()
			out = append(out, l)
		}
		return out
	}
	if north, want := got(`"lot"='north' AND "zone"='a' AND "site"='harbor' AND "gateway"='gw-1'`), []lot{{1, 3, 1, 2, 0}, {2, 3, 2, 1, 0}, {4, 3, 1, 1, 1}, {6, 3, 0, 2, 1}}; fmt.Sprint(north) != fmt.Sprint(want) {
		t.Errorf("north/a parking_lot = %v, want %v", north, want)
	}
	if south, want := got(`"lot"='south'`), []lot{{5, 1, 1, 0, 0}}; fmt.Sprint(south) != fmt.Sprint(want) {
		t.Errorf("south parking_lot = %v, want %v", south, want)
	}
	if c, o, u, f := r.fleet.Lot("harbor", "gw-1", "north", "a"); c != 3 || o != 0 || u != 2 || f != 1 {
		t.Errorf("north/a now = %d/%d/%d/%d, want 3/0/2/1", c, o, u, f)
	}
	if n := count(t, influx, db, "parking_lot", "capacity"); n != 5 {
		t.Errorf("parking_lot points = %d, want 4", n)
	}
	if st, _ := r.fleet.Gateway("harbor", "gw-1"); st.Seq.Duplicates != 1 || st.Version != "1.2.3" || len(st.Devices) != 4 {
		t.Errorf("gateway = %+v", st)
	}

	// Last Will: offline. Its time is when the gateway connected, before
	// the birth message's.
	s := &payload.Status{Site: "harbor", Gateway: "gw-1", Online: false, Time: time.Now().Add(-time.Hour)}
	if err := g.publish(payload.StatusTopic("harbor", "gw-1"), payload.EncodeStatus(s), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "offline", func() bool { st, _ := r.fleet.Gateway("harbor", "gw-1"); return !st.Online })
}
