package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// strikeDoorYAML is a gateway with 8 OSDP readers on one line and a door
// for reader-1 whose strike is the GPIO simulator's line STRIKE.
func strikeDoorYAML(broker, outboxDir, sock, port string) string {
	return fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: [%q]}
outbox: {path: %s}
status: {listen: ""}
gpio: {simulator: %s}
%sdoors:
  - name: lobby
    readers: [reader-1]
    strike: "gpiochip0:17"
    unlock_time: 1s
`, broker, outboxDir, sock, readersYAML(port, 115200, 8, "1s"))
}

// A gateway killed with SIGKILL the moment its strike opens has already
// stored the decision's access record: a restarted gateway finds it in the
// outbox and publishes it to the broker. The first gateway's uplink is
// down, so the outbox is the record's only way out, and the card was read
// before the kill only: the restarted gateway cannot decide again.
func TestAccessRecordSurvivesKillAtStrike(t *testing.T) {
	dir := t.TempDir()
	store, err := access.OpenStore(filepath.Join(dir, "access"), access.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Sync(1, []access.Credential{{ID: "alice", Card: "12:3456"}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var gw *child
	opened := make(chan time.Time, 4)
	_, sock := gpioSimWith(t, simgpio.ServerOptions{OnOut: func(line string, l periphgpio.Level, at time.Time) {
		if line != "gpiochip0:17" || l != periphgpio.High {
			return
		}
		mu.Lock()
		if gw != nil {
			gw.cmd.Process.Kill() // SIGKILL, right as the strike opens
		}
		mu.Unlock()
		opened <- at
	}}, "gpiochip0:17")
	readers, port := readerLine(t, 115200, 8, nil)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t)) // no broker: the uplink stays down
	if err := os.WriteFile(cfgPath, []byte(strikeDoorYAML(dead, filepath.Join(dir, "outbox"), sock, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	gw = gatewayChild(t, cfgPath)
	mu.Unlock()
	testenv.WaitFor(t, 30*time.Second, "the gateway polling reader-1", func() bool {
		return readers[0].Counts().ByCode[osdp.CmdPoll] > 0
	})
	readers[0].PresentWiegand26(12, 3456)
	select {
	case <-opened:
	case <-gw.exited:
		t.Fatal("the gateway exited before the strike opened")
	case <-time.After(30 * time.Second):
		t.Fatal("the strike did not open")
	}
	<-gw.exited

	// The restart, now with a broker.
	broker := testenv.Mosquitto(t)
	got := make(chan payload.Record, 16)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("cloud-observer").SetAutoReconnect(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe(payload.TopicFor("s", "g", payload.Event), 1, func(_ mqtt.Client, m mqtt.Message) {
		b, err := payload.DecodeBatch(m.Payload())
		if err != nil {
			t.Errorf("events batch: %v", err)
			return
		}
		for _, r := range b.Records {
			if r.Measurement == "access" {
				got <- r
			}
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	src, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	restarted := gatewayChild(t, writeFile(t, dir, "restart.yaml", strings.Replace(string(src), dead, broker.URL(), 1)))
	select {
	case r := <-got:
		if r.Tags["result"] != "granted" || r.Fields["credential"].Str() != "alice" || r.Tags["door"] != "lobby" {
			t.Errorf("access record %+v, want alice granted at lobby", r)
		}
	case <-restarted.exited:
		t.Fatal("the restarted gateway exited")
	case <-time.After(30 * time.Second):
		t.Fatal("the access record of the decision before the kill never reached the broker")
	}
}

// writeFile writes src to dir/name and returns its path.
func writeFile(t testing.TB, dir, name, src string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
