package ingest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func influxdBin(t *testing.T) string {
	if p := os.Getenv("LULING_INFLUXD"); p != "" {
		return p
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, ".tools", "bin", "influxd")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatalf("influxd not found at %s", p)
		}
		t.Skipf("influxd not found at %s", p)
	}
	return p
}

func TestInfluxOutageLosesNothing(t *testing.T) {
	bin, dir := influxdBin(t), t.TempDir()
	httpPort, rpcPort := testenv.FreePort(t), testenv.FreePort(t)
	srv, err := testenv.StartInflux(bin, dir, httpPort, rpcPort)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Close()
		}
	})
	if _, err := srv.Query("", "CREATE DATABASE community"); err != nil {
		t.Fatal(err)
	}
	broker := testenv.Mosquitto(t)
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-outage", Group: "cloudd",
		ReportEvery: 300 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, srv.URL, "community", nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	recs := func(seq int) []payload.Record {
		out := make([]payload.Record, 5)
		for i := range out {
			out[i] = pv(fmt.Sprintf("inv-%d", i), float64(seq), ts.Add(time.Duration(seq)*time.Second))
		}
		return out
	}
	g.send(1, recs(1)...)
	waitFor(t, 30*time.Second, "first message written", func() bool { return r.in.Stats().Written == 1 })

	srv.Close()
	stopped = true
	for seq := 2; seq <= 21; seq++ {
		g.send(uint64(seq), recs(seq)...)
	}
	waitFor(t, 30*time.Second, "outage report", func() bool {
		return strings.Contains(r.logs.String(), "influxdb unavailable for") && strings.Contains(r.logs.String(), "messages waiting")
	})
	if s := r.in.Stats(); s.Acked != 1 || s.InfluxUp {
		t.Errorf("while InfluxDB is down: %+v, want only the first message acknowledged and influx down", s)
	}

	srv2, err := testenv.StartInflux(bin, dir, httpPort, rpcPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	waitFor(t, 60*time.Second, "all messages written", func() bool { return r.in.Stats().Written == 21 })
	if n := count(t, srv2, "community", "pv", "ac_power_w"); n != 105 {
		t.Errorf("pv points = %d, want 105", n)
	}
	st, _ := r.fleet.Gateway("harbor", "gw-1")
	if st.Seq.GapsOpen != 0 || st.Seq.Lost != 0 || st.Seq.LastSeq != 21 {
		t.Errorf("seq = %+v", st.Seq)
	}
	if !strings.Contains(r.logs.String(), "influxdb available again") {
		t.Errorf("recovery not logged:\n%s", r.logs.String())
	}
}

func TestCloudRestartWhileGatewaysPublish(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	cfg := ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-restart", Group: "cloudd"}
	r1 := startIngest(t, cfg, influx.URL, db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)

	const msgs, per = 300, 10
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() {
		for seq := 1; seq <= msgs; seq++ {
			recs := make([]payload.Record, per)
			for i := range recs {
				recs[i] = pv(fmt.Sprintf("inv-%d", i), float64(seq), ts.Add(time.Duration(seq)*time.Millisecond))
			}
			if err := g.publish(payload.TopicFor("harbor", "gw-1", payload.Telemetry), g.batch(uint64(seq), payload.Telemetry, recs...), false); err != nil {
				done <- err
				return
			}
			sent.Add(1)
			if seq%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		done <- nil
	}()
	waitFor(t, 30*time.Second, "some messages written", func() bool { return r1.in.Stats().Written >= 30 })
	r1.stop()
	stoppedAt := sent.Load()
	time.Sleep(200 * time.Millisecond) // the gateway keeps publishing while cloudd is down
	r2 := startIngest(t, cfg, influx.URL, db, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every point written", func() bool { return count(t, influx, db, "pv", "ac_power_w") == msgs*per })
	// The instance counts a message and tracks its sequence number after
	// its write is confirmed, a moment after the points are visible.
	waitFor(t, 10*time.Second, "the last message accounted for", func() bool {
		st, _ := r2.fleet.Gateway("harbor", "gw-1")
		return st.Seq.LastSeq == msgs && r1.in.Stats().Written+r2.in.Stats().Written >= msgs
	})
	t.Logf("cloudd stopped after %d published, %d written by the first instance, %d by the second (%d redelivered)",
		stoppedAt, r1.in.Stats().Written, r2.in.Stats().Written, r2.in.Stats().Written+r1.in.Stats().Written-msgs)
	if st, _ := r2.fleet.Gateway("harbor", "gw-1"); st.Seq.GapsOpen != 0 || st.Seq.LastSeq != msgs {
		t.Errorf("second instance seq = %+v", st.Seq)
	}
}

func TestTwoInstancesShareTheLoad(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	a := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-a", Group: "cloudd"}, influx.URL, db, nil)
	b := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-b", Group: "cloudd"}, influx.URL, db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	const msgs = 100
	for seq := 1; seq <= msgs; seq++ {
		g.send(uint64(seq), pv("inv-1", float64(seq), ts.Add(time.Duration(seq)*time.Second)))
	}
	waitFor(t, 30*time.Second, "all messages written", func() bool { return a.in.Stats().Written+b.in.Stats().Written == msgs })
	if a.in.Stats().Written == 0 || b.in.Stats().Written == 0 {
		t.Errorf("shared subscription not shared: a wrote %d, b wrote %d", a.in.Stats().Written, b.in.Stats().Written)
	}
	if n := count(t, influx, db, "pv", "ac_power_w"); n != msgs {
		t.Errorf("pv points = %d, want %d", n, msgs)
	}
}
