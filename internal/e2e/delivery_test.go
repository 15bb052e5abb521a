package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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

// gatedWriter is cloudd's InfluxDB writer with a pause switch: while
// paused a write waits, so ingest stops reading from the broker, exactly
// like a cloudd that is slow or stopped in a debugger.
type gatedWriter struct {
	w    *influxw.Writer
	mu   sync.Mutex
	open chan struct{}
}

func (g *gatedWriter) pause() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedWriter) resume() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gatedWriter) Write(ctx context.Context, lines []byte) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.w.Write(ctx, lines)
}

// TestBrokerDropAfterPubackIsReplayed: Mosquitto with a small queue drops
// most of a burst after acknowledging it to the gateway, because cloudd is
// paused. The gateway keeps what the cloud has not confirmed; cloudd's
// acknowledgements and resend requests (and the gateway's own stall check
// for the dropped tail) bring every message in, written once: 0 lost.
func TestBrokerDropAfterPubackIsReplayed(t *testing.T) {
	const msgs = 400
	port := testenv.FreePort(t)
	broker := testenv.MosquittoConf(t, t.TempDir(), fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
user root
max_inflight_messages 10
max_queued_messages 20
log_dest stdout
log_type error
log_type warning
`, port), port)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	influx, db := testenv.NewDatabase(t)

	// cloudd's ingest, paused from the start.
	w, err := influxw.New(influxw.Config{URL: influx.URL, Bucket: db, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	gw := &gatedWriter{w: w}
	gw.pause()
	f := fleet.New(time.Hour, nil)
	cloudLogs := &testenv.Buffer{}
	in, err := ingest.New(ingest.Config{BrokerURL: url, ClientID: "cloudd-delivery", Group: "cloudd",
		QueueMessages: 4, AckEvery: 100 * time.Millisecond, ResendAfter: 500 * time.Millisecond, AckRepeat: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(cloudLogs, nil))}, gw, f)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); in.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "ingest connected", func() bool { return in.Health() == nil })

	// The gateway: a real outbox and uplink.
	gwLogs := &testenv.Buffer{}
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Site: "harbor", Gateway: "gw-7",
		Logger: slog.New(slog.NewTextHandler(gwLogs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	up, err := uplink.New(ob, uplink.Options{Brokers: []string{url}, Site: "harbor", Gateway: "gw-7",
		ConfirmWait: time.Second, Logger: slog.New(slog.NewTextHandler(gwLogs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); up.Run(ctx) }()

	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range msgs {
		rec := payload.Record{Measurement: "pv", Tags: map[string]string{"device": "inv-1"},
			Fields: map[string]payload.Value{"ac_power_w": payload.Float(float64(i) + 0.5)}, Time: t0.Add(time.Duration(i) * time.Millisecond)}
		if err := ob.Append(ctx, payload.Telemetry, []payload.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	// Every message reaches the broker and is PUBACKed while cloudd is
	// paused; the broker cannot hold them all for cloudd.
	testenv.WaitFor(t, 60*time.Second, "every message PUBACKed", func() bool { return ob.Stats().SentThrough >= msgs })
	if st := ob.Stats(); st.Unacked.Messages < msgs {
		t.Fatalf("outbox let %d messages go before the cloud confirmed them", msgs-st.Unacked.Messages)
	}
	gw.resume()

	defer func() {
		if t.Failed() {
			t.Logf("mosquitto:\n%s\ncloudd:\n%s\ngateway:\n%s", broker.Output(), tail(cloudLogs.String(), 40), tail(gwLogs.String(), 40))
		}
	}()
	testenv.WaitFor(t, 120*time.Second, "every message confirmed by the cloud", func() bool {
		return ob.Stats().Unacked.Messages == 0
	})
	count := func() int {
		res, err := influx.Query(db, `SELECT count(ac_power_w) FROM pv WHERE gateway = 'gw-7'`)
		if err != nil || len(res) == 0 || len(res[0].Values) == 0 {
			return -1
		}
		n, _ := res[0].Values[0][1].(json.Number).Int64()
		return int(n)
	}
	if n := count(); n != msgs {
		t.Fatalf("InfluxDB holds %d readings, want %d", n, msgs)
	}
	g, _ := f.Gateway("harbor", "gw-7")
	if g.Seq.Lost != 0 || g.Seq.DeclaredLost != 0 || g.Seq.GapsOpen != 0 || g.Seq.Conflicts != 0 || g.Seq.LastSeq != msgs {
		t.Fatalf("cloudd's sequence check: %+v; want every number up to %d, none lost", g.Seq, msgs)
	}
	ds := up.DeliveryStats()
	if ds.Resent == 0 {
		t.Fatalf("nothing was sent again (%+v): the broker dropped nothing, the test proves nothing", ds)
	}
	t.Logf("delivery: %+v; cloud seq %+v; written %d", ds, g.Seq, in.Stats().Written)
}
