package ingest_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/broker"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestEmbeddedBrokerConfinesGateways(t *testing.T) {
	hash := func(pw string) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", Credentials: map[string][]byte{
		"harbor/gw-a": hash("secret-a"), "harbor/gw-b": hash("secret-b"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	influx, db := testenv.NewDatabase(t)
	user, pass := b.InternalCredential()
	r := startIngest(t, ingest.Config{BrokerURL: b.URL(), ClientID: "cloudd-embedded", Group: "cloudd", Username: user, Password: pass}, influx.URL, db, nil)
	ts := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)

	// Wrong password: refused.
	o := connectOpts(b.URL(), "harbor/gw-a", "wrong")
	if c := newClient(o); c.Connect().WaitTimeout(10*time.Second) && c.IsConnected() {
		t.Error("gateway with a wrong password connected")
	}

	// Gateway A publishes as gateway B: denied, and A is disconnected.
	a := connectGateway(t, b.URL(), "harbor", "gw-a", "harbor/gw-a", "secret-a")
	forged := (&gateway{t: t, site: "harbor", gw: "gw-b"}).batch(1, payload.Telemetry, pv("inv-1", 666, ts))
	_ = a.publish(payload.TopicFor("harbor", "gw-b", payload.Telemetry), forged, false)
	waitFor(t, 10*time.Second, "gateway A disconnected", func() bool { return !a.c.IsConnected() })

	// Gateway B's own data lands.
	gb := connectGateway(t, b.URL(), "harbor", "gw-b", "harbor/gw-b", "secret-b")
	gb.birth()
	gb.send(7, pv("inv-1", 42, ts))
	waitFor(t, 30*time.Second, "gateway B written", func() bool { return r.in.Stats().Written == 1 })
	rows := query(t, influx, db, `SELECT * FROM pv`)
	if len(rows) != 1 || rows[0]["gateway"] != "gw-b" || rows[0]["ac_power_w"].(interface{ String() string }).String() != "42" {
		t.Errorf("pv rows = %v, want only gateway B's own point", rows)
	}
	waitFor(t, 10*time.Second, "birth seen", func() bool { st, _ := r.fleet.Gateway("harbor", "gw-b"); return st.Online })
	if st, _ := r.fleet.Gateway("harbor", "gw-b"); st.Seq.LastSeq != 7 || st.Messages != 1 {
		t.Errorf("gw-b = %+v", st)
	}
	if strings.Contains(r.logs.String(), "666") {
		t.Error("the forged message reached cloudd")
	}
}

func TestEmbeddedBrokerKeepsCloudSession(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", Credentials: map[string][]byte{"harbor/gw-1": h}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	influx, db := testenv.NewDatabase(t)
	user, pass := b.InternalCredential()
	cfg := ingest.Config{BrokerURL: b.URL(), ClientID: "cloudd-embedded-session", Username: user, Password: pass}
	r1 := startIngest(t, cfg, influx.URL, db, nil)
	g := connectGateway(t, b.URL(), "harbor", "gw-1", "harbor/gw-1", "pw")
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	g.send(1, pv("inv-1", 1, ts))
	waitFor(t, 30*time.Second, "first written", func() bool { return r1.in.Stats().Written == 1 })
	// cloudd acknowledges a message to the broker after its write: wait
	// for that too, or the first message stays in the session and is
	// counted with those queued below.
	waitFor(t, 30*time.Second, "first acknowledged to the broker", func() bool {
		_, _, waiting := b.Session(cfg.ClientID)
		return waiting == 0
	})
	r1.stop()
	// The broker must have seen cloudd leave before the gateway publishes,
	// so that the messages are queued in cloudd's session.
	waitFor(t, 10*time.Second, "cloudd's session offline", func() bool {
		known, connected, _ := b.Session(cfg.ClientID)
		return known && !connected
	})
	for seq := 2; seq <= 20; seq++ { // cloudd is away: the broker queues for its session
		g.send(uint64(seq), pv("inv-1", float64(seq), ts.Add(time.Duration(seq)*time.Second)))
	}
	waitFor(t, 30*time.Second, "messages queued in cloudd's session", func() bool {
		_, _, waiting := b.Session(cfg.ClientID)
		return waiting == 19
	})
	r2 := startIngest(t, cfg, influx.URL, db, nil)
	waitFor(t, 30*time.Second, "queued messages written", func() bool { return r2.in.Stats().Written == 19 })
	if n := count(t, influx, db, "pv", "ac_power_w"); n != 20 {
		t.Errorf("pv points = %d, want 20", n)
	}
}

func TestBadBrokerCredentialIsReported(t *testing.T) {
	b, err := broker.Start(broker.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	logs := &syncBuffer{}
	in, err := ingest.New(ingest.Config{BrokerURL: b.URL(), ClientID: "cloudd-badauth", Username: "cloudd-internal", Password: "guess",
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, nopWriter{}, fleet.New(time.Minute, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	waitFor(t, 30*time.Second, "connect failure logged", func() bool { return strings.Contains(logs.String(), "cannot connect to broker") })
	if in.Health() == nil {
		t.Error("healthy without a broker connection")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(context.Context, []byte) error { return nil }
