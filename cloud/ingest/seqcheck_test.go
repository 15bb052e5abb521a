package ingest_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// counters are every per-gateway counter that must never go down.
func counters(g fleet.Gateway) map[string]uint64 {
	m := map[string]uint64{"messages": g.Messages, "records": g.Records, "points": g.PointsWritten,
		"lost": g.Seq.Lost, "reordered": g.Seq.Reordered, "late": g.Seq.Late, "duplicates": g.Seq.Duplicates,
		"conflicts": g.Seq.Conflicts, "far_below": g.Seq.FarBelow, "resets": g.Seq.Resets}
	for k, v := range g.Rejected {
		m["rejected_"+k] = v
	}
	return m
}

func checkMonotonic(t *testing.T, before, after map[string]uint64) {
	t.Helper()
	for k, v := range before {
		if after[k] < v {
			t.Errorf("counter %s went down: %d -> %d", k, v, after[k])
		}
	}
}

// Forged sequence numbers far ahead are rejected, counted and acknowledged
// without moving the tracker; a number seen before with other content is a
// conflict: not written (the first write stays), counted, and raised as an
// alert point; an identical redelivery stays harmless.
func TestSequenceForgeriesAreRejected(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := fleet.New(time.Minute, clock)
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-forged", Grace: time.Hour}, influx.URL, db, f)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return ts.Add(time.Duration(s) * time.Second) }

	g.send(4, pv("inv-1", 4, at(4)))
	waitFor(t, 30*time.Second, "first message written", func() bool { return r.in.Stats().Written == 1 })
	st, _ := f.Gateway("harbor", "gw-1")
	before := counters(st)

	// The values of issue #10: the highest uint64, and one far ahead but
	// below 2^63. Their points must not land.
	g.send(math.MaxUint64, pv("inv-1", -1, at(1)))
	g.send(1<<40, pv("inv-1", -2, at(2)))
	third := g.batch(5, payload.Telemetry, pv("inv-1", 5, at(5)))
	g.mustPublish(payload.TopicFor("harbor", "gw-1", payload.Telemetry), third)
	g.mustPublish(payload.TopicFor("harbor", "gw-1", payload.Telemetry), third) // identical redelivery
	g.send(5, pv("inv-1", 666, at(5)))                                          // same number, other content
	g.send(6, pv("inv-1", 6, at(6)))
	waitFor(t, 30*time.Second, "7 messages handled", func() bool { return r.in.Stats().Acked == 7 })

	st, _ = f.Gateway("harbor", "gw-1")
	if want := (fleet.SeqStats{LastSeq: 6, Duplicates: 1, Conflicts: 1}); st.Seq != want {
		t.Errorf("seq = %+v, want %+v", st.Seq, want)
	}
	if st.Rejected[fleet.ReasonSeqJump] != 2 || st.Messages != 3 {
		t.Errorf("gateway = %+v, want 2 seq_jump rejections and 3 messages written", st)
	}
	if s := r.in.Stats(); s.Written != 3 || s.Rejected != 2 || s.Skipped != 2 {
		t.Errorf("stats = %+v, want 3 written, 2 rejected, 2 skipped", s)
	}
	rows := query(t, influx, db, `SELECT ac_power_w FROM pv`)
	var got []string
	for _, row := range rows {
		got = append(got, string(row["ac_power_w"].(json.Number)))
	}
	if strings.Join(got, " ") != "4 5 6" {
		t.Errorf("pv points %v, want 4 5 6: forged or conflicting content written", got)
	}
	alerts := query(t, influx, db, `SELECT * FROM alert`)
	if len(alerts) != 1 || alerts[0]["rule"] != "seq_conflict" || alerts[0]["severity"] != "critical" ||
		alerts[0]["gateway"] != "gw-1" || alerts[0]["site"] != "harbor" ||
		!strings.Contains(alerts[0]["message"].(string), "harbor/gw-1") || !strings.Contains(alerts[0]["message"].(string), "seq 5") {
		t.Errorf("alert points = %v, want one seq_conflict alert naming the gateway and seq 5", alerts)
	}
	logs := r.logs.String()
	for _, want := range []string{"reason=seq_jump", "18446744073709551615", "sequence conflict", "seq=5"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// No gap was opened: nothing turns into "lost" after the grace
	// period, and no counter went down.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	f.Expire()
	st, _ = f.Gateway("harbor", "gw-1")
	if st.Seq.Lost != 0 || st.Seq.GapsOpen != 0 {
		t.Errorf("after grace: seq = %+v, want nothing lost", st.Seq)
	}
	checkMonotonic(t, before, counters(st))
	var m bytes.Buffer
	f.WriteMetrics(&m)
	for _, want := range []string{
		`luling_cloud_seq_conflicts_total{site="harbor",gateway="gw-1"} 1`,
		`luling_cloud_rejected_total{site="harbor",gateway="gw-1",reason="seq_jump"} 2`,
		`luling_cloud_seq_lost_total{site="harbor",gateway="gw-1"} 0`,
	} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Records of measurements outside the schema are left out and counted;
// the rest of the message is written and its number tracked. A configured
// allowance lets them through.
func TestUnknownMeasurements(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	_, db2 := testenv.NewDatabase(t)
	strict := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-strict"}, influx.URL, db, nil)
	open := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-open", AllowMeasurements: []string{"made_up"}}, influx.URL, db2, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	ts := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	madeUp := func(s int) payload.Record {
		return payload.Record{Measurement: "made_up", Tags: map[string]string{"device": "x"},
			Fields: map[string]payload.Value{"v": payload.Int(int64(s))}, Time: ts.Add(time.Duration(s) * time.Second)}
	}
	fault := payload.Record{Measurement: "fault", Tags: map[string]string{"device": "inv-1", "code": "over_temp"},
		Fields: map[string]payload.Value{"state": payload.String("active")}, Time: ts}
	g.send(1, pv("inv-1", 1, ts), madeUp(1), fault, madeUp(2))
	g.send(2, madeUp(3))
	for _, r := range []*running{strict, open} {
		waitFor(t, 30*time.Second, "2 messages written", func() bool { return r.in.Stats().Written == 2 })
	}

	measurements := func(db string) string {
		var names []string
		for _, row := range query(t, influx, db, `SHOW MEASUREMENTS`) {
			names = append(names, row["name"].(string))
		}
		return strings.Join(names, " ")
	}
	if got := measurements(db); got != "fault pv" {
		t.Errorf("measurements written = %q, want %q", got, "fault pv")
	}
	st, _ := strict.fleet.Gateway("harbor", "gw-1")
	if st.RecordsDropped[fleet.ReasonMeasurement] != 3 || st.Records != 2 || st.Seq.LastSeq != 2 || st.Seq.GapsOpen != 0 || len(st.Rejected) != 0 {
		t.Errorf("gateway = %+v, want 3 records dropped, 2 written, both numbers tracked", st)
	}
	if s := strict.in.Stats(); s.Dropped != 3 {
		t.Errorf("stats = %+v, want 3 records dropped", s)
	}
	if logs := strict.logs.String(); !strings.Contains(logs, "made_up") || !strings.Contains(logs, "-allow-measurements") {
		t.Errorf("drop not logged with the measurement and the remedy:\n%s", logs)
	}
	var m bytes.Buffer
	strict.fleet.WriteMetrics(&m)
	if want := `luling_cloud_records_dropped_total{site="harbor",gateway="gw-1",reason="measurement"} 3`; !strings.Contains(m.String(), want) {
		t.Errorf("metrics lack %q", want)
	}

	if got := measurements(db2); got != "fault made_up pv" {
		t.Errorf("allowed: measurements written = %q, want %q", got, "fault made_up pv")
	}
	if n := count(t, influx, db2, "made_up", "v"); n != 3 {
		t.Errorf("allowed: made_up points = %d, want 3", n)
	}
}

func TestCheckMeasurements(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""}, {[]string{"*"}, ""}, {[]string{"rule_note", "relay.v2"}, ""},
		{[]string{"a b"}, `entry 1 "a b": want a measurement name`},
		{[]string{"ok", ""}, `entry 2 "": want a measurement name`},
		{[]string{"*", "x"}, `"*" allows every measurement`},
	} {
		err := ingest.CheckMeasurements(c.in)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckMeasurements(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}
