package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

// syncBuffer is written by other goroutines while the test reads it.
type syncBuffer = testenv.Buffer

type running struct {
	in    *ingest.Ingest
	fleet *fleet.Fleet
	logs  *syncBuffer
	stop  func()
}

// startIngest runs an Ingest until the test ends or stop is called.
func startIngest(t testing.TB, cfg ingest.Config, influxURL, db string, f *fleet.Fleet) *running {
	t.Helper()
	w, err := influxw.New(influxw.Config{URL: influxURL, Bucket: db, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if f == nil {
		f = fleet.New(time.Hour, nil)
	}
	in, err := ingest.New(cfg, w, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	r := &running{in: in, fleet: f, logs: logs}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingest.Run: %v", err)
			}
			w.Close()
		})
	}
	t.Cleanup(r.stop)
	waitFor(t, 30*time.Second, "ingest connected", func() bool { return in.Health() == nil })
	return r
}

var waitFor = testenv.WaitFor

type gateway struct {
	t    testing.TB
	c    mqtt.Client
	site string
	gw   string
}

func connectGateway(t testing.TB, url, site, gw, user, pass string) *gateway {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID("gw-" + site + "-" + gw).SetCleanSession(true).SetAutoReconnect(false)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway %s/%s connect: %v", site, gw, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &gateway{t: t, c: c, site: site, gw: gw}
}

func (g *gateway) publish(topic string, body []byte, retained bool) error {
	tok := g.c.Publish(topic, 1, retained, body)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish %s: timeout", topic)
	}
	return tok.Error()
}

func (g *gateway) mustPublish(topic string, body []byte) {
	g.t.Helper()
	if err := g.publish(topic, body, false); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) batch(seq uint64, kind payload.Kind, recs ...payload.Record) []byte {
	g.t.Helper()
	b := &payload.Batch{Version: 1, Site: g.site, Gateway: g.gw, Seq: seq, Kind: kind, Sent: time.Now(), Records: recs}
	body, err := payload.AppendBatch(nil, b)
	if err != nil {
		g.t.Fatal(err)
	}
	return body
}

func (g *gateway) send(seq uint64, recs ...payload.Record) {
	g.t.Helper()
	g.mustPublish(payload.TopicFor(g.site, g.gw, payload.Telemetry), g.batch(seq, payload.Telemetry, recs...))
}

func (g *gateway) birth(devices ...payload.DeviceInfo) {
	g.t.Helper()
	s := &payload.Status{Site: g.site, Gateway: g.gw, Online: true, Version: "1.2.3", Time: time.Now(), Devices: devices}
	if err := g.publish(payload.StatusTopic(g.site, g.gw), payload.EncodeStatus(s), true); err != nil {
		g.t.Fatal(err)
	}
}

func query(t testing.TB, in *testenv.Influx, db, q string) []map[string]any {
	t.Helper()
	series, err := in.Query(db, q)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, s := range series {
		rows = append(rows, s.Rows()...)
	}
	return rows
}

// count returns the number of points of a measurement (counting field f).
func count(t testing.TB, in *testenv.Influx, db, m, f string) int64 {
	t.Helper()
	rows := query(t, in, db, fmt.Sprintf("SELECT count(%q) FROM %q", f, m))
	if len(rows) == 0 {
		return 0
	}
	n, err := rows[0]["count"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bay(device, lot, zone string, occupied bool, t time.Time) payload.Record {
	tags := map[string]string{"device": device, "bay": device, "lot": lot}
	if zone != "" {
		tags["zone"] = zone
	}
	return payload.Record{
		Measurement: "parking_bay",
		Tags:        tags,
		Fields:      map[string]payload.Value{"occupied": payload.Bool(occupied), "distance_cm": payload.Float(100)},
		Time:        t,
	}
}

func pv(device string, power float64, t time.Time) payload.Record {
	return payload.Record{
		Measurement: "pv",
		Tags:        map[string]string{"device": device},
		Fields:      map[string]payload.Value{"ac_power_w": payload.Float(power)},
		Time:        t,
	}
}

func connectOpts(url, user, pass string) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().AddBroker(url).SetClientID("probe-" + user).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
}

func newClient(o *mqtt.ClientOptions) mqtt.Client { return mqtt.NewClient(o) }
