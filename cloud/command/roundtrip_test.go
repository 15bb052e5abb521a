package command_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	cloudcmd "github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/drivers"
	_ "github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/gateway/uplink"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

const site, gwID = "lot-a", "gw-1"

var waitFor = testenv.WaitFor

// cloud is cloudd's ingest (for the fleet's online state) and command
// service behind an HTTP server, as cmd/cloudd wires them.
type cloud struct {
	fleet *fleet.Fleet
	svc   *cloudcmd.Service
	http  *httptest.Server
}

func startCloud(t *testing.T, brokerURL, clientID string) *cloud {
	t.Helper()
	influx, db := testenv.NewDatabase(t)
	w, err := influxw.New(influxw.Config{URL: influx.URL, Bucket: db, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := fleet.New(time.Hour, nil)
	in, err := ingest.New(ingest.Config{BrokerURL: brokerURL, ClientID: clientID}, w, f)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cloudcmd.New(cloudcmd.Config{BrokerURL: brokerURL, ClientID: clientID + "-cmd", Gateway: f.Gateway})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{in.Run, svc.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	mux.Handle("/", f.Handler(fleet.HTTPOptions{Health: in.Health}))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
		w.Close()
	})
	waitFor(t, 30*time.Second, "cloud connected", func() bool { return in.Health() == nil && svc.Connected() })
	return &cloud{fleet: f, svc: svc, http: srv}
}

// post sends a command request and returns the status code and the body.
func (c *cloud) post(t *testing.T, gw, req string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(c.http.URL+"/api/v1/gateways/"+site+"/"+gw+"/commands", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	return decodeResp(t, resp)
}

func (c *cloud) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(c.http.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeResp(t, resp)
}

func decodeResp(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("HTTP %d: body %q is not JSON: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, m
}

func (c *cloud) online(gw string) bool {
	g, ok := c.fleet.Gateway(site, gw)
	return ok && g.Online
}

// emptySource is an outbox with nothing to send.
type emptySource struct{}

func (emptySource) Pending(ctx context.Context, _ uint64, _ int) ([]payload.Message, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (emptySource) Ack(...uint64) error { return nil }

// edge is the gateway side: a Modbus bus on the simulated lot, a modbus
// device for bay 1, the command executor and a real uplink.
type edge struct {
	lot       *modbussim.Lot
	exec      *command.Executor
	dev       drivers.Writer
	mu        sync.Mutex
	events    []payload.Record
	brokerURL string
	stop      func()
}

func newEdge(t *testing.T, brokerURL string) *edge {
	t.Helper()
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Ultrasonic: 1, Line: modbussim.Line{Baud: 115200}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lot.Close() })
	info := lot.Buses()[0]
	b, err := bus.New(bus.Config{Name: info.Name, Port: serialport.Config{Name: info.Path, Baud: 115200}}, bus.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	busDone := make(chan struct{})
	go func() {
		defer close(busDone)
		b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-busDone
		b.Close()
	})
	modbus, _ := drivers.Lookup("modbus")
	bay := lot.Bays()[0]
	dev, err := modbus.New(drivers.Spec{ID: "bay-1", Driver: "modbus", Bus: info.Name, Unit: int(bay.Unit), Profile: "ultrasonic-bay", Tags: map[string]string{"bay": "1"}},
		drivers.Env{Bus: b.Device("bay-1")})
	if err != nil {
		t.Fatal(err)
	}
	return &edge{lot: lot, dev: dev.(drivers.Writer), brokerURL: brokerURL}
}

// start runs the executor and the uplink until the returned stop is called.
func (e *edge) start(t *testing.T, stateDir string) {
	t.Helper()
	var up *uplink.Uplink
	exec, err := command.New(command.Options{
		StateDir: stateDir,
		Devices: func(id string) (drivers.Writer, bool) {
			if id == "bay-1" {
				return e.dev, true
			}
			return nil, false
		},
		Emit: func(r payload.Record) {
			e.mu.Lock()
			e.events = append(e.events, r)
			e.mu.Unlock()
		},
		Reply: func(ctx context.Context, id string, body []byte) error { return up.PublishReply(ctx, id, body) },
	})
	if err != nil {
		t.Fatal(err)
	}
	up, err = uplink.New(emptySource{}, uplink.Options{Brokers: []string{e.brokerURL}, Site: site, Gateway: gwID, OnCommand: exec.Handle})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); exec.Run(ctx) }()
	go func() { defer wg.Done(); up.Run(ctx) }()
	var once sync.Once
	e.exec = exec
	e.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			exec.Close()
		})
	}
	t.Cleanup(e.stop)
}

func TestRoundTrip(t *testing.T) {
	if os.Getenv("LULING_REQUIRE_SERVICES") == "" && testing.Short() {
		t.Skip("needs Mosquitto and InfluxDB")
	}
	broker := testenv.Mosquitto(t)
	c := startCloud(t, broker.URL(), "cloudd-rt")
	e := newEdge(t, broker.URL())
	state := t.TempDir()

	// Never seen: refused at once with a clear error.
	code, body := c.post(t, gwID, `{"name":"ping"}`)
	if code != http.StatusNotFound || !strings.Contains(body["error"].(string), "gateway lot-a/gw-1: no status seen from it") {
		t.Fatalf("unknown gateway: %d %v", code, body)
	}

	e.start(t, state)
	waitFor(t, 30*time.Second, "gateway online in the fleet", func() bool { return c.online(gwID) })

	// HTTP → broker → uplink → executor → bus → simulator's LED register → reply → HTTP.
	code, body = c.post(t, gwID, `{"id":"led-1","name":"device.write","args":{"device":"bay-1","point":"led","value":"red"},"timeout":"20s"}`)
	if code != http.StatusOK || body["status"] != "ok" || body["id"] != "led-1" {
		t.Fatalf("device.write: %d %v", code, body)
	}
	if led, _ := e.lot.LED(1); led != modbussim.LEDRed {
		t.Fatalf("LED = %d after the command, want red (%d)", led, modbussim.LEDRed)
	}
	// The same id again: not run again (the LED keeps what the bay shows
	// now), answered with the first result.
	e.lot.Sensor(1).Unit().WriteHolding(modbussim.UltrasonicLED, modbussim.LEDGreen)
	code, body = c.post(t, gwID, `{"id":"led-1","name":"device.write","args":{"device":"bay-1","point":"led","value":"red"},"timeout":"20s"}`)
	if code != http.StatusOK || body["status"] != "duplicate" {
		t.Fatalf("repeated id: %d %v", code, body)
	}
	if orig, _ := body["result"].(map[string]any)["original"].(map[string]any); orig["status"] != "ok" {
		t.Errorf("duplicate without the original result: %v", body)
	}
	if led, _ := e.lot.LED(1); led != modbussim.LEDGreen {
		t.Errorf("a duplicate command wrote the LED again (%d)", led)
	}
	// A device error comes back as the reply's message.
	code, body = c.post(t, gwID, `{"name":"device.write","args":{"device":"bay-1","point":"distance_cm","value":3},"timeout":"20s"}`)
	if code != http.StatusOK || body["status"] != "error" || !strings.Contains(body["message"].(string), "read-only") {
		t.Errorf("read-only point: %d %v", code, body)
	}
	code, body = c.post(t, gwID, `{"name":"door.open","timeout":"20s"}`)
	if code != http.StatusOK || body["status"] != "unknown" {
		t.Errorf("unknown command: %d %v", code, body)
	}
	code, body = c.post(t, gwID, `{"name":"ping","timeout":"soon"}`)
	if code != http.StatusBadRequest || !strings.Contains(body["error"].(string), `duration "soon"`) {
		t.Errorf("bad timeout: %d %v", code, body)
	}
	e.mu.Lock()
	nev := len(e.events)
	e.mu.Unlock()
	if nev != 4 {
		t.Errorf("%d command events on the gateway, want 4", nev)
	}

	// Offline: the gateway shut down (its offline status reaches the fleet).
	e.stop()
	waitFor(t, 30*time.Second, "gateway offline in the fleet", func() bool { return !c.online(gwID) })
	code, body = c.post(t, gwID, `{"name":"device.write","args":{"device":"bay-1","point":"led","value":"yellow"}}`)
	if code != http.StatusConflict || !strings.Contains(body["error"].(string), "gateway lot-a/gw-1: gateway offline since") || !strings.Contains(body["error"].(string), `"queue": true`) {
		t.Fatalf("offline gateway: %d %v", code, body)
	}

	// Queued: delivered when the gateway comes back.
	code, body = c.post(t, gwID, `{"id":"q-1","name":"device.write","args":{"device":"bay-1","point":"led","value":"yellow"},"queue":true,"timeout":"100ms","ttl":"10m"}`)
	if code != http.StatusAccepted || body["status"] != "queued" || body["id"] != "q-1" || !strings.Contains(body["message"].(string), "published when the gateway comes online") {
		t.Fatalf("queued: %d %v", code, body)
	}
	if st := c.svc.Stats(); st.Queued != 1 {
		t.Fatalf("queued commands %d, want 1", st.Queued)
	}
	e.start(t, state)
	waitFor(t, 30*time.Second, "the queued command's reply", func() bool {
		_, ok := c.svc.Reply(site, gwID, "q-1")
		return ok
	})
	code, body = c.get(t, "/api/v1/gateways/"+site+"/"+gwID+"/commands/q-1")
	if code != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("queued reply: %d %v", code, body)
	}
	if led, _ := e.lot.LED(1); led != modbussim.LEDYellow {
		t.Errorf("LED = %d after the queued command, want yellow", led)
	}
	if st := c.svc.Stats(); st.Queued != 0 || st.Waiting != 0 {
		t.Errorf("service still holds commands: %+v", st)
	}
	// Commands are never retained (MQTT contract v1).
	if n := retainedCommands(t, broker.URL()); n != 0 {
		t.Errorf("%d retained commands on the broker", n)
	}
}

// retainedCommands counts the retained messages on the gateway's command
// topics.
func retainedCommands(t *testing.T, url string) int {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("retained-check").SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	var mu sync.Mutex
	n := 0
	done := make(chan struct{}, 1)
	tok := c.Subscribe(payload.Base(site, gwID)+"/cmd/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		if len(m.Payload()) > 0 && m.Retained() {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
	tok.Wait()
	// Retained messages come right after the SUBACK; a round trip through
	// the broker after them proves they all arrived.
	c.Subscribe("probe/x", 1, func(mqtt.Client, mqtt.Message) { done <- struct{}{} }).Wait()
	c.Publish("probe/x", 1, false, []byte("x")).Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("probe did not come back")
	}
	mu.Lock()
	defer mu.Unlock()
	return n
}

// TestNoReply: the fleet says online but nothing answers.
func TestNoReply(t *testing.T) {
	broker := testenv.Mosquitto(t)
	c := startCloud(t, broker.URL(), "cloudd-nr")
	ghost := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("ghost"))
	if tok := ghost.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	st := payload.EncodeStatus(&payload.Status{Site: site, Gateway: "ghost", Online: true, Time: time.Now().UTC()})
	ghost.Publish(payload.StatusTopic(site, "ghost"), 1, true, st).Wait()
	t.Cleanup(func() {
		ghost.Publish(payload.StatusTopic(site, "ghost"), 1, true, []byte{}).Wait()
		ghost.Disconnect(100)
	})
	waitFor(t, 30*time.Second, "ghost online", func() bool { return c.online("ghost") })
	code, body := c.post(t, "ghost", `{"name":"ping","timeout":0.3}`)
	if code != http.StatusGatewayTimeout || !strings.Contains(body["error"].(string), "no reply in time within 300ms") {
		t.Fatalf("no reply: %d %v", code, body)
	}
	if body["id"] == nil {
		t.Error("504 without the command id")
	}
	code, body = c.post(t, "ghost", `{"name":"ping","prio":1}`)
	if code != http.StatusBadRequest || !strings.Contains(body["error"].(string), `unknown field "prio"`) {
		t.Errorf("unknown key: %d %v", code, body)
	}
	code, body = c.post(t, "ghost", `{"name":"ping","ttl":"1h"}`)
	if code != http.StatusBadRequest || !strings.Contains(body["error"].(string), "ttl is for queued commands") {
		t.Errorf("ttl without queue: %d %v", code, body)
	}
}
