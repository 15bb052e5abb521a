package ingest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// listenAcks collects what cloudd publishes on g's ack topic.
func listenAcks(t *testing.T, g *gateway) *acks {
	t.Helper()
	got := &acks{}
	tok := g.c.Subscribe(payload.AckTopic(g.site, g.gw), 1, func(_ mqtt.Client, m mqtt.Message) {
		a, err := payload.DecodeAck(m.Payload())
		if err != nil {
			t.Errorf("cloudd's ack does not decode: %v: %s", err, m.Payload())
			return
		}
		got.mu.Lock()
		got.got = append(got.got, a)
		got.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe ack: %v", tok.Error())
	}
	return got
}

func (a *acks) maxThrough() (n uint64, count int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range a.got {
		n = max(n, x.Through)
	}
	return n, len(a.got)
}

// marker is the device tag of message seq's records: the gate finds a
// message's write by it (the trailing comma keeps m1 from matching m10).
func marker(seq int) string { return fmt.Sprintf("device=m%d,", seq) }

func marked(seq, n int, at time.Time) []payload.Record {
	out := make([]payload.Record, n)
	for i := range out {
		out[i] = pv(fmt.Sprintf("m%d", seq), float64(i), at.Add(time.Duration(i)*time.Millisecond))
	}
	return out
}

// Two writes in flight complete out of order: the later one lands while
// the earlier is held. Nothing is acknowledged, to the broker or to the
// gateway, until the earlier one landed too; then both are, in order.
func TestOverlappingWritesAcknowledgeInOrder(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	gate := newInfluxGate(t, influx.URL)
	release := make(chan struct{})
	gate.setRule(func(body string) gateAction {
		if strings.Contains(body, marker(1)) {
			return gateAction{hold: release}
		}
		return gateAction{}
	})
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-order", Writes: 2, BatchPoints: 1, Grace: time.Hour,
		AckEvery: 20 * time.Millisecond, AckRepeat: 20 * time.Millisecond}, gate.URL(), db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	g.birth() // online: acks repeat every AckRepeat, so a wrong one would show
	waitFor(t, 30*time.Second, "the birth handled", func() bool { return r.in.Stats().Acked == 1 })
	got := listenAcks(t, g)
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)

	g.send(1, marked(1, 1, ts)...)
	waitFor(t, 30*time.Second, "the write of 1 at the gate", func() bool { return gate.cur.Load() == 1 })
	g.send(2, marked(2, 1, ts.Add(time.Second))...)
	waitFor(t, 30*time.Second, "2 in InfluxDB while 1 is held", func() bool {
		return count(t, influx, db, "pv", "ac_power_w") == 1 && r.in.Stats().WritesInFlight == 1
	})
	_, before := got.maxThrough()
	waitFor(t, 30*time.Second, "three more acks to the gateway", func() bool { _, n := got.maxThrough(); return n >= before+3 })
	if through, _ := got.maxThrough(); through != 0 {
		t.Fatalf("the gateway was told through %d while the write of 1 was in flight", through)
	}
	if s := r.in.Stats(); s.Acked != 1 || s.Written != 0 || s.WritesHeld != 0 {
		t.Fatalf("while 1 is held: %+v, want nothing but the birth acknowledged, nothing counted as written", s)
	}
	if n := r.fleet.InFlight("harbor", "gw-1"); n != 2 {
		t.Fatalf("fleet holds %d numbers in flight, want 2", n)
	}
	if st := r.fleet.SeqState("harbor", "gw-1"); len(st.Gaps) != 1 || st.Gaps[0].First != 1 || st.Gaps[0].Last != 2 {
		t.Fatalf("state that would move to another instance: %+v, want 1..2 awaited", st)
	}

	close(release)
	waitFor(t, 30*time.Second, "both acknowledged", func() bool {
		s := r.in.Stats()
		a := got.last()
		return s.Acked == 3 && s.Written == 2 && a != nil && a.Through == 2
	})
	if s := r.in.Stats(); s.WritesHeld != 1 || s.MaxInFlight != 2 || s.WritesInFlight != 0 {
		t.Fatalf("stats %+v: want one write held for an earlier one, limit 2, none in flight", s)
	}
	if n := count(t, influx, db, "pv", "ac_power_w"); n != 2 {
		t.Fatalf("%d points, want 2", n)
	}
}

// Writes fail (503) and are retried while later writes land: every
// message lands once, the counters count each once, and the gateway is
// confirmed to the end. Then cloudd stops while a write is held: what it
// did not write stays unacknowledged, and the next session writes it.
func TestFailedWritesLoseNothingAndCountOnce(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	gate := newInfluxGate(t, influx.URL)
	var failed atomic.Int64
	gate.setRule(func(body string) gateAction {
		for _, seq := range []int{3, 7} {
			if strings.Contains(body, marker(seq)) && failed.Add(1) <= 4 {
				return gateAction{status: http.StatusServiceUnavailable}
			}
		}
		return gateAction{delay: 5 * time.Millisecond}
	})
	const per = 5
	cfg := ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-failed", Writes: 3, BatchPoints: per, Grace: time.Hour,
		AckEvery: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	f := fleet.New(time.Hour, nil)
	r := startIngest(t, cfg, gate.URL(), db, f)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	got := listenAcks(t, g)
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for seq := 1; seq <= 12; seq++ {
		g.send(uint64(seq), marked(seq, per, ts.Add(time.Duration(seq)*time.Second))...)
	}
	waitFor(t, 60*time.Second, "12 messages acknowledged and confirmed", func() bool {
		a := got.last()
		return r.in.Stats().Acked == 12 && a != nil && a.Through == 12
	})
	if n := failed.Load(); n < 4 {
		t.Fatalf("the gate failed %d writes, want at least 4", n)
	}
	st, _ := f.Gateway("harbor", "gw-1")
	if st.Messages != 12 || st.PointsWritten != 12*per || st.Seq.Duplicates != 0 || st.Seq.Lost != 0 || st.Seq.GapsOpen != 0 {
		t.Fatalf("gateway %+v: want 12 messages, %d points, no duplicate, loss or gap", st, 12*per)
	}
	if s := r.in.Stats(); s.Written != 12 || s.Points != 12*per || s.WriteErrors < 4 {
		t.Fatalf("stats %+v: want 12 written, %d points, the failures counted", s, 12*per)
	}
	if n := count(t, influx, db, "pv", "ac_power_w"); n != 12*per {
		t.Fatalf("%d points in InfluxDB, want %d", n, 12*per)
	}

	// 13 is held; 14 and 15 land behind it. cloudd stops.
	release := make(chan struct{})
	defer close(release)
	gate.setRule(func(body string) gateAction {
		if strings.Contains(body, marker(13)) {
			return gateAction{hold: release}
		}
		return gateAction{}
	})
	g.send(13, marked(13, per, ts.Add(13*time.Second))...)
	waitFor(t, 30*time.Second, "the write of 13 at the gate", func() bool { return gate.cur.Load() == 1 })
	g.send(14, marked(14, per, ts.Add(14*time.Second))...)
	g.send(15, marked(15, per, ts.Add(15*time.Second))...)
	waitFor(t, 30*time.Second, "14 and 15 in InfluxDB", func() bool { return count(t, influx, db, "pv", "ac_power_w") == 14*per })
	r.stop()
	if s := r.in.Stats(); s.Acked != 12 {
		t.Fatalf("after stopping with 13 in flight: %d acknowledged, want 12", s.Acked)
	}
	if through, _ := got.maxThrough(); through != 12 {
		t.Fatalf("the gateway was told through %d, want 12", through)
	}

	gate.setRule(nil)
	f2 := fleet.New(time.Hour, nil)
	r2 := startIngest(t, cfg, gate.URL(), db, f2)
	waitFor(t, 60*time.Second, "13..15 written by the next session", func() bool {
		return r2.in.Stats().Acked == 3 && count(t, influx, db, "pv", "ac_power_w") == 15*per
	})
	if st, _ := f2.Gateway("harbor", "gw-1"); st.Messages != 3 || st.Seq.Duplicates != 0 {
		t.Fatalf("next session: %+v, want 13..15 written once", st)
	}
}

// With InfluxDB answering each write after 150 ms, cloudd keeps Writes
// requests in flight and its throughput rises with it.
func TestSlowInfluxThroughputRisesWithWrites(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	const msgs, per = 24, 10
	run := func(writes int) (time.Duration, int64) {
		gate := newInfluxGate(t, influx.URL)
		gate.setRule(func(string) gateAction { return gateAction{delay: 150 * time.Millisecond} })
		r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: fmt.Sprintf("cloudd-slow-%d", writes), Writes: writes, BatchPoints: per},
			gate.URL(), db, nil)
		defer r.stop()
		g := connectGateway(t, broker.URL(), "slow", fmt.Sprintf("gw-%d", writes), "", "")
		ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
		start := time.Now()
		for seq := 1; seq <= msgs; seq++ {
			g.send(uint64(seq), marked(seq, per, ts.Add(time.Duration(seq)*time.Second))...)
		}
		waitFor(t, 2*time.Minute, "every message acknowledged", func() bool { return r.in.Stats().Acked == msgs })
		return time.Since(start), gate.peak.Load()
	}
	one, peak1 := run(1)
	four, peak4 := run(4)
	t.Logf("%d messages through a 150 ms InfluxDB: %v with 1 write in flight, %v with 4", msgs, one, four)
	if peak1 != 1 || peak4 != 4 {
		t.Fatalf("writes in flight at the gate: at most %d with 1, %d with 4", peak1, peak4)
	}
	if four*2 > one {
		t.Fatalf("4 writes in flight took %v, 1 took %v: want at least twice as fast", four, one)
	}
}

// Two bays of one lot change at the same instant, reported in two
// messages whose writes overlap: both derive a parking_lot point of that
// lot and time, and the second (occupied 2) must land last, or InfluxDB
// keeps the first (occupied 1).
func TestOverlappingWritesKeepLotPointsInOrder(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	gate := newInfluxGate(t, influx.URL)
	release := make(chan struct{})
	gate.setRule(func(body string) gateAction {
		if strings.Contains(body, "bay=b1,") {
			return gateAction{hold: release}
		}
		return gateAction{}
	})
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-lotorder", Writes: 2, BatchPoints: 1, Grace: time.Hour},
		gate.URL(), db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	g.send(1, bay("b1", "north", "", true, at))
	waitFor(t, 30*time.Second, "the write of 1 at the gate", func() bool { return gate.cur.Load() == 1 })
	g.send(2, bay("b2", "north", "", true, at))
	waitFor(t, 30*time.Second, "2 admitted and its write started", func() bool {
		st, _ := r.fleet.Gateway("harbor", "gw-1")
		return st.Seq.LastSeq == 2 && r.in.Stats().WritesInFlight == 2
	})
	if n := gate.writes.Load(); n != 1 {
		t.Fatalf("%d writes reached InfluxDB while the one with the same lot point was held, want 1", n)
	}
	close(release)
	waitFor(t, 30*time.Second, "both acknowledged", func() bool { return r.in.Stats().Acked == 2 })
	rows := query(t, influx, db, `SELECT "occupied" FROM "parking_lot"`)
	if len(rows) != 1 || fmt.Sprint(rows[0]["occupied"]) != "2" {
		t.Fatalf("parking_lot = %v, want one point with occupied 2", rows)
	}
}

// BenchmarkIngestSlowInflux is BenchmarkIngestEndToEnd through an InfluxDB
// that answers every write 50 ms late (a remote or busy server), with 1,
// 2 and 4 writes in flight: the round trip, not cloudd's CPU, bounds the
// rate, and overlapping writes hide it.
func BenchmarkIngestSlowInflux(b *testing.B) {
	broker := testenv.Mosquitto(b)
	influx, db := testenv.NewDatabase(b)
	for _, writes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("writes=%d", writes), func(b *testing.B) {
			gate := newInfluxGate(b, influx.URL)
			gate.setRule(func(string) gateAction { return gateAction{delay: 50 * time.Millisecond} })
			const per = 100
			r := startIngest(b, ingest.Config{BrokerURL: broker.URL(), ClientID: fmt.Sprintf("cloudd-bslow-%d", writes), Writes: writes, BatchPoints: 10 * per},
				gate.URL(), db, nil)
			defer r.stop()
			g := connectGateway(b, broker.URL(), "bench", fmt.Sprintf("gw-%d", writes), "", "")
			ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			bodies := make([][]byte, b.N)
			for n := range bodies {
				bodies[n] = g.batch(uint64(n+1), payload.Telemetry, marked(n, per, ts.Add(time.Duration(n)*time.Second))...)
			}
			topic := payload.TopicFor(g.site, g.gw, payload.Telemetry)
			b.ResetTimer()
			start := time.Now()
			for _, body := range bodies {
				g.c.Publish(topic, 1, false, body)
			}
			waitFor(b, 5*time.Minute, "every message acknowledged", func() bool { return r.in.Stats().Written == uint64(b.N) })
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(gate.writes.Load()), "influx-requests")
			b.ReportMetric(float64(gate.peak.Load()), "peak-in-flight")
		})
	}
}
