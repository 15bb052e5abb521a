package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/cloud/web"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// inProcess is one in-process cloudd instance on the NATS engine: the bus,
// ingest writing the real InfluxDB, parking restored at takeover as cloudd
// does it, and the command service.
type inProcess struct {
	bus   *Bus
	fleet *fleet.Fleet
	in    *ingest.Ingest
	cmds  *command.Service
	stop  func()
}

func startInProcess(t *testing.T, c *natstest.Cluster, name string, parts int, influx *testenv.Influx, db string) *inProcess {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", name)
	f := fleet.New(time.Minute, nil)
	q := &web.Influx{URL: influx.URL, DB: db}
	b, err := New(Config{
		URLs: strings.Split(c.URLs(), ","), Instance: name, Partitions: parts,
		AckWait: 3 * time.Second, LeaseTTL: 6 * time.Second, Fleet: f, Logger: log,
		Restore: web.RestoreParking(q, f),
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := influxw.New(influxw.Config{URL: influx.URL, Bucket: db, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Config{Source: b, Grace: time.Minute, Writes: 2, AckEvery: 100 * time.Millisecond, Logger: log}, w, f)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := command.New(command.Config{BrokerURL: strings.Join(c.MQTTURLs(), ","), ClientID: name + "-cmd", Gateway: f.Gateway, Store: b.Commands(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("%s: ingest: %v", name, err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := cmds.Run(ctx); err != nil {
			t.Errorf("%s: commands: %v", name, err)
		}
	}()
	var once sync.Once
	cd := &inProcess{bus: b, fleet: f, in: in, cmds: cmds, stop: func() { once.Do(func() { cancel(); wg.Wait(); w.Close() }) }}
	t.Cleanup(cd.stop)
	testenv.WaitFor(t, 60*time.Second, name+" commands connected", cmds.Connected)
	return cd
}

// gatewayIn returns a gateway id of site whose partition (of parts) is p.
func gatewayIn(site string, parts, p int, not string) string {
	for i := 0; ; i++ {
		if gw := fmt.Sprintf("gw-%d", i); gw != not && Partition(site, gw, parts) == p {
			return gw
		}
	}
}

// lastLot returns the newest parking_lot point of a gateway's lot.
func lastLot(t *testing.T, influx *testenv.Influx, db, gw string) map[string]any {
	t.Helper()
	series, err := influx.Query(db, fmt.Sprintf(`SELECT "occupied", "unknown", "free", "capacity" FROM "parking_lot" WHERE "gateway" = '%s' ORDER BY time DESC LIMIT 1`, gw))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range series {
		if rows := s.Rows(); len(rows) > 0 {
			return rows[0]
		}
	}
	return nil
}

// A partition moves from one instance to another. The new owner's
// parking_lot points count the bays the old owner saw (rebuilt from
// InfluxDB at takeover, not from the next bay to report), and a command
// queued on the old owner for an offline gateway of that partition is
// delivered once when the gateway comes online.
func TestHandoverKeepsLotCountsAndQueuedCommands(t *testing.T) {
	c := natstest.Start(t, 3)
	influx, db := testenv.NewDatabase(t)
	const parts = 2
	a := startInProcess(t, c, "a", parts, influx, db)
	testenv.WaitFor(t, 60*time.Second, "a to hold every partition", func() bool { return len(a.bus.Owned()) == parts })

	// Partition 1 goes to b when b joins (n mod 2 over a, b).
	const site = "harbor"
	lotGW := gatewayIn(site, parts, 1, "")
	cmdGW := gatewayIn(site, parts, 1, lotGW)
	pub := mqttClient(t, c.MQTTURLs()[:1], "gw-"+lotGW)
	var devices []payload.DeviceInfo
	for i := 1; i <= 4; i++ {
		devices = append(devices, payload.DeviceInfo{ID: fmt.Sprintf("b%d", i), Driver: "modbus", Measurement: "parking_bay", Tags: map[string]string{"lot": "north"}})
	}
	publish(t, pub, payload.StatusTopic(site, lotGW),
		payload.EncodeStatus(&payload.Status{Site: site, Gateway: lotGW, Online: true, Version: "1", Time: time.Now(), Devices: devices}), true)
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	bayRec := func(n int, occupied bool, at time.Time) payload.Record {
		id := fmt.Sprintf("b%d", n)
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": id, "bay": id, "lot": "north"},
			Fields: map[string]payload.Value{"occupied": payload.Bool(occupied)}, Time: at}
	}
	send := func(seq uint64, recs ...payload.Record) {
		t.Helper()
		body, err := payload.AppendBatch(nil, &payload.Batch{Version: 1, Site: site, Gateway: lotGW, Seq: seq, Kind: payload.Telemetry, Sent: time.Now(), Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		publish(t, pub, payload.TopicFor(site, lotGW, payload.Telemetry), body, false)
	}
	testenv.WaitFor(t, 60*time.Second, "a to see the birth", func() bool { g, ok := a.fleet.Gateway(site, lotGW); return ok && g.Online })
	send(1, bayRec(1, true, ts), bayRec(2, true, ts.Add(time.Second)), bayRec(3, true, ts.Add(2*time.Second)), bayRec(4, false, ts.Add(3*time.Second)))
	testenv.WaitFor(t, 60*time.Second, "a's lot point: 3 of 4 occupied", func() bool {
		p := lastLot(t, influx, db, lotGW)
		return p != nil && fmt.Sprint(p["occupied"]) == "3" && fmt.Sprint(p["free"]) == "1"
	})

	// A command for a gateway that has not connected yet, queued on a.
	out, err := a.cmds.Send(context.Background(), site, cmdGW, command.Request{ID: "cmd-1", Name: "barrier.open", Queue: true, Timeout: command.Duration(200 * time.Millisecond)})
	if !out.Queued {
		t.Fatalf("command not queued: %+v, %v", out, err)
	}

	b := startInProcess(t, c, "b", parts, influx, db)
	testenv.WaitFor(t, 90*time.Second, "partition 1 handed over to b", func() bool {
		ob := b.bus.Owned()
		return len(ob) == 1 && ob[0] == 1 && len(a.bus.Owned()) == 1
	})
	if s := a.bus.Stats(); s.Released != 1 || s.Lost != 0 {
		t.Fatalf("a: %+v, want one partition handed over cleanly", s)
	}

	// The fourth bay fills: b writes the lot point, counting the three
	// bays only a saw.
	send(2, bayRec(4, true, ts.Add(time.Minute)))
	testenv.WaitFor(t, 60*time.Second, "b to write seq 2", func() bool { g, _ := b.fleet.Gateway(site, lotGW); return g.Messages == 1 })
	p := lastLot(t, influx, db, lotGW)
	if fmt.Sprint(p["occupied"]) != "4" || fmt.Sprint(p["unknown"]) != "0" || fmt.Sprint(p["free"]) != "0" || fmt.Sprint(p["capacity"]) != "4" {
		t.Fatalf("b's lot point after the handover: %v, want 4 of 4 occupied, none unknown", p)
	}
	if capacity, occupied, unknown, free := b.fleet.Lot(site, lotGW, "north", ""); capacity != 4 || occupied != 4 || unknown != 0 || free != 0 {
		t.Fatalf("b's counts: capacity %d occupied %d unknown %d free %d", capacity, occupied, unknown, free)
	}

	// The instance that queued the command stops; its gateway connects
	// then and gets the command once, from b.
	a.stop()
	var mu sync.Mutex
	got := map[string]int{}
	gw2 := mqttClient(t, c.MQTTURLs()[1:2], "gw-"+cmdGW)
	tok := gw2.Subscribe(payload.TopicRoot+"/"+site+"/"+cmdGW+"/cmd/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		var cmd struct {
			ID string `json:"id"`
		}
		json.Unmarshal(m.Payload(), &cmd)
		mu.Lock()
		got[cmd.ID]++
		mu.Unlock()
	})
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	publish(t, gw2, payload.StatusTopic(site, cmdGW),
		payload.EncodeStatus(&payload.Status{Site: site, Gateway: cmdGW, Online: true, Version: "1", Time: time.Now()}), true)
	count := func(id string) int { mu.Lock(); defer mu.Unlock(); return got[id] }
	testenv.WaitFor(t, 60*time.Second, "the queued command delivered", func() bool { return count("cmd-1") >= 1 })
	// A later command from b arrives after any second copy of the first.
	testenv.WaitFor(t, 60*time.Second, "b to see the gateway online", func() bool { g, ok := b.fleet.Gateway(site, cmdGW); return ok && g.Online })
	b.cmds.Send(context.Background(), site, cmdGW, command.Request{ID: "cmd-2", Name: "barrier.open", Timeout: command.Duration(200 * time.Millisecond)})
	testenv.WaitFor(t, 60*time.Second, "the second command delivered", func() bool { return count("cmd-2") == 1 })
	if n := count("cmd-1"); n != 1 {
		t.Fatalf("the queued command arrived %d times, want once", n)
	}
}

// Every instance that sees a gateway's birth takes its stored commands at
// once: each command is published by one of them, once.
func TestStoredCommandsAreTakenOnce(t *testing.T) {
	c := natstest.Start(t, 3)
	const parts = 2
	var buses []*Bus
	for _, name := range []string{"a", "b", "d"} {
		in := startInstance(t, c, name, parts)
		buses = append(buses, in.bus)
	}
	testenv.WaitFor(t, 60*time.Second, "the buses ready", func() bool {
		for _, b := range buses {
			if !b.Connected() {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	for i := range 20 {
		q := command.Queued{ID: fmt.Sprintf("c%d", i), Topic: "gw/v1/s/g/cmd/x", Body: []byte("{}"), Expires: time.Now().Add(time.Hour)}
		if err := buses[i%3].Commands().Put(ctx, "s", "g", q); err != nil {
			t.Fatal(err)
		}
	}
	if err := buses[0].Commands().Put(ctx, "s", "other", command.Queued{ID: "x", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got := make([][]command.Queued, 3)
	var wg sync.WaitGroup
	for i, b := range buses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := b.Commands().Take(ctx, "s", "g")
			if err != nil {
				t.Errorf("take %d: %v", i, err)
			}
			got[i] = q
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, q := range got {
		for _, c := range q {
			seen[c.ID]++
		}
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct commands taken, want 20: %v", len(seen), seen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("command %s taken %d times", id, n)
		}
	}
	if q, err := buses[1].Commands().Take(ctx, "s", "g"); err != nil || len(q) != 0 {
		t.Fatalf("taken again: %v, %v", q, err)
	}
	if q, err := buses[2].Commands().Take(ctx, "s", "never"); err != nil || len(q) != 0 {
		t.Fatalf("a gateway without commands: %v, %v", q, err)
	}
	if q, err := buses[2].Commands().Take(ctx, "s", "other"); err != nil || len(q) != 1 || q[0].ID != "x" {
		t.Fatalf("the other gateway's command: %v, %v", q, err)
	}
}
