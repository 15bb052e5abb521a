package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/gateway/uplink"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// TestDamagedOutboxLossesAreDeclared: a flipped byte inside one stored
// message and a truncated segment tail lose exactly those messages; the
// gateway never reuses their numbers and declares them, so cloudd counts
// them as declared_lost, with nothing lost silently and no conflict.
func TestDamagedOutboxLossesAreDeclared(t *testing.T) {
	const msgs = 100
	dir := t.TempDir()
	opts := outbox.Options{Dir: dir, Site: "harbor", Gateway: "gw-9", Logger: slog.New(slog.DiscardHandler)}
	ob, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	reading := func(i int) []payload.Record {
		return []payload.Record{{Measurement: "pv", Tags: map[string]string{"device": "inv-1"},
			Fields: map[string]payload.Value{"ac_power_w": payload.Float(float64(i) + 0.5)}, Time: t0.Add(time.Duration(i) * time.Millisecond)}}
	}
	for i := range msgs {
		if err := ob.Append(context.Background(), payload.Telemetry, reading(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "telemetry-*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// One byte in the body of a message near the start, and the last
	// quarter of the file cut off (at whatever byte that is).
	body := strings.Index(string(b[200:]), `"ac_power_w"`) + 200
	b[body] ^= 0x20
	b = b[:len(b)*3/4]
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	ob, err = outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	st := ob.Stats()
	kept := int(st.Unacked.Messages)
	if kept >= msgs-1 || kept < msgs/2 || st.NextSeq != msgs+1 || st.DroppedMissing.Messages != int64(msgs-kept) {
		t.Fatalf("after the damage: %+v; want fewer than %d kept, next seq %d, the rest counted missing", st, msgs-1, msgs+1)
	}
	for i := range 10 {
		if err := ob.Append(context.Background(), payload.Telemetry, reading(msgs+i)); err != nil {
			t.Fatal(err)
		}
	}

	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	w, err := influxw.New(influxw.Config{URL: influx.URL, Bucket: db, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := fleet.New(time.Hour, nil)
	in, err := ingest.New(ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-damage", AckEvery: 100 * time.Millisecond}, w, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); in.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "ingest connected", func() bool { return in.Health() == nil })
	up, err := uplink.New(ob, uplink.Options{Brokers: []string{broker.URL()}, Site: "harbor", Gateway: "gw-9", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); up.Run(ctx) }()

	testenv.WaitFor(t, 60*time.Second, "everything confirmed and the losses forgotten", func() bool {
		s := ob.Stats()
		return s.Unacked.Messages == 0 && s.Losses == 0
	})
	g, _ := f.Gateway("harbor", "gw-9")
	if g.Seq.DeclaredLost != uint64(msgs-kept) || g.Seq.Lost != 0 || g.Seq.Conflicts != 0 || g.Seq.GapsOpen != 0 || g.Seq.LastSeq != msgs+10 {
		t.Fatalf("cloudd's sequence check %+v: want %d declared lost, none lost, no conflict, last %d", g.Seq, msgs-kept, msgs+10)
	}
	res, err := influx.Query(db, `SELECT count(ac_power_w) FROM pv WHERE gateway = 'gw-9'`)
	if err != nil || len(res) == 0 {
		t.Fatalf("query: %v", err)
	}
	if n, _ := res[0].Values[0][1].(json.Number).Int64(); int(n) != kept+10 {
		t.Fatalf("InfluxDB holds %d readings, want %d", n, kept+10)
	}
}
