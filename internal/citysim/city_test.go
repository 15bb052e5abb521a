package citysim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

// runIngest runs cloudd's ingest path in the test process until the test
// ends.
func runIngest(t *testing.T, broker, influxURL, db string) (*ingest.Ingest, *fleet.Fleet) {
	t.Helper()
	w, err := influxw.New(influxw.Config{URL: influxURL, Bucket: db, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := fleet.New(time.Minute, nil)
	in, err := ingest.New(ingest.Config{BrokerURL: broker, ClientID: "cloudd-" + db, AckEvery: 200 * time.Millisecond, ResendAfter: time.Second}, w, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest: %v", err)
		}
		w.Close()
	})
	testenv.WaitFor(t, 30*time.Second, "ingest connected", func() bool { return in.Health() == nil })
	return in, f
}

func count(t *testing.T, in *testenv.Influx, db, q string) uint64 {
	t.Helper()
	s, err := in.Query(db, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) == 0 || len(s[0].Values) == 0 {
		return 0
	}
	n, err := s[0].Values[0][1].(json.Number).Int64()
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return uint64(n)
}

// TestCityLandsExactlyOnce runs 20 gateways against a real Mosquitto, cloudd's
// ingest and a real InfluxDB: every record the simulator reports sent is in
// InfluxDB exactly once, every message was written once, and cloudd saw no
// gap.
func TestCityLandsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Mosquitto, InfluxDB and cloudd; not with -short")
	}
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	in, f := runIngest(t, broker.URL(), influx.URL, db)

	goroutines := runtime.NumGoroutine()
	city, err := citysim.New(citysim.Config{
		Brokers: []string{broker.URL()}, Site: "town", Gateways: 20, Devices: 40,
		BayChange: 4 * time.Second, BatchEvery: 100 * time.Millisecond, Seed: 7,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- city.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("city.Run: %v", err)
		}
	}()
	testenv.WaitFor(t, 60*time.Second, "20 gateways online", func() bool { return city.Totals().Online == 20 })
	t.Logf("paho cost: %d goroutines for 20 connections", runtime.NumGoroutine()-goroutines)
	// Enough traffic that every gateway sent both kinds a few times.
	testenv.WaitFor(t, 60*time.Second, "traffic", func() bool {
		r := city.Report()
		for _, g := range r.PerGateway {
			if g.LastSeq < 10 {
				return false
			}
		}
		return r.ByMeasurement["access"] >= 20 && r.ByMeasurement["pv"] >= 20
	})
	city.StopTraffic()
	testenv.WaitFor(t, 60*time.Second, "cloudd confirmed everything", func() bool { return city.Totals().Unconfirmed == 0 })
	r := city.Report()
	t.Logf("sent: %d messages, %d records %v, %d acks, %d resent", r.Messages, r.Records, r.ByMeasurement, r.Acks, r.Resent)

	checkLanded(t, influx, db, f, r)
	if s := in.Stats(); s.Rejected != 0 {
		t.Errorf("cloudd rejected %d messages", s.Rejected)
	}
	// cloudd's latency histogram counted each written message once.
	var metrics strings.Builder
	in.WriteMetrics(&metrics)
	if want := fmt.Sprintf("luling_cloud_ingest_latency_seconds_count %d\n", r.Messages); !strings.Contains(metrics.String(), want) {
		t.Errorf("metrics lack %q:\n%s", want, metrics.String())
	}

	// A clean stop publishes every gateway's offline status.
	cancel()
	if err := <-done; err != nil {
		t.Errorf("city.Run: %v", err)
	}
	done <- nil
	testenv.WaitFor(t, 30*time.Second, "gateways offline at cloudd", func() bool {
		for _, g := range r.PerGateway {
			if st, _ := f.Gateway(g.Site, g.Gateway); st.Online {
				return false
			}
		}
		return true
	})
}

// checkLanded checks that every record r reports sent is in InfluxDB once,
// and that cloudd wrote every message of every gateway once with no gap.
func checkLanded(t *testing.T, influx *testenv.Influx, db string, f *fleet.Fleet, r citysim.Report) {
	t.Helper()
	var sum uint64
	for m, field := range map[string]string{"parking_bay": "occupied", "access": "credential", "pv": "ac_power_w"} {
		got := count(t, influx, db, fmt.Sprintf(`SELECT count(%q) FROM %q WHERE site = '%s'`, field, m, r.PerGateway[0].Site))
		if got != r.ByMeasurement[m] {
			t.Errorf("%s: %d points in InfluxDB, the simulator sent %d records", m, got, r.ByMeasurement[m])
		}
		sum += r.ByMeasurement[m]
	}
	if sum != r.Records || len(r.ByMeasurement) != 3 {
		t.Errorf("records by measurement %v do not add up to %d", r.ByMeasurement, r.Records)
	}
	for _, g := range r.PerGateway {
		st, ok := f.Gateway(g.Site, g.Gateway)
		switch {
		case !ok:
			t.Errorf("%s: unknown to cloudd", g.Gateway)
		case st.Seq.LastSeq != g.LastSeq || st.Messages != g.LastSeq || g.Through != g.LastSeq:
			t.Errorf("%s: simulator sent 1..%d (confirmed through %d); cloudd saw up to %d and wrote %d messages", g.Gateway, g.LastSeq, g.Through, st.Seq.LastSeq, st.Messages)
		case st.Seq.Lost+st.Seq.GapsOpen+st.Seq.Conflicts+st.Seq.Late != 0:
			t.Errorf("%s: cloudd's sequence check: %+v", g.Gateway, st.Seq)
		case !st.Online:
			t.Errorf("%s: cloudd has it offline", g.Gateway)
		}
	}
}

// A broker restart in the middle of a run: the gateways keep what they
// published while it was down or that was not confirmed, publish it again
// on the new connection, and everything still lands once.
func TestCityRidesOutBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Mosquitto, InfluxDB and cloudd; not with -short")
	}
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	_, f := runIngest(t, broker.URL(), influx.URL, db)
	city, err := citysim.New(citysim.Config{
		Brokers: []string{broker.URL()}, Site: "restart", Gateways: 5, Devices: 30,
		BayChange: 2 * time.Second, BatchEvery: 100 * time.Millisecond, Seed: 9,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- city.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	testenv.WaitFor(t, 60*time.Second, "gateways online", func() bool { return city.Totals().Online == 5 })
	testenv.WaitFor(t, 60*time.Second, "traffic", func() bool { return city.Totals().Messages >= 20 })
	broker.Stop()
	testenv.WaitFor(t, 60*time.Second, "gateways offline", func() bool { return city.Totals().Online == 0 })
	before := city.Totals().Messages
	testenv.WaitFor(t, 60*time.Second, "traffic while the broker is down", func() bool { return city.Totals().Messages >= before+10 })
	broker.Start()
	testenv.WaitFor(t, 60*time.Second, "gateways back", func() bool { return city.Totals().Online == 5 })
	city.StopTraffic()
	testenv.WaitFor(t, 90*time.Second, "cloudd confirmed everything", func() bool { return city.Totals().Unconfirmed == 0 })
	r := city.Report()
	if r.Resent == 0 {
		t.Errorf("nothing published again after the restart: %+v", r.Totals)
	}
	checkLanded(t, influx, db, f, r)
}
