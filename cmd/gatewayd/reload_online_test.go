package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// A config reload that adds a device but keeps the uplink settings: the
// status topic goes from the old birth straight to the new one, with no
// offline status in between (cloudd's fleet view would show the gateway
// going offline and online again). The broker is a real Mosquitto.
func TestReloadStaysOnline(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(devices int) {
		var b strings.Builder
		fmt.Fprintf(&b, "site: s\ngateway: g\nuplink: {brokers: [%s]}\noutbox: {path: %s}\nstatus: {listen: \"\"}\n",
			broker.URL(), filepath.Join(dir, "outbox"))
		fmt.Fprintf(&b, "buses:\n  - {name: rs485-1, port: %s, parity: even}\ndevices:\n", lot.Buses()[0].Path)
		for i := 1; i <= devices; i++ {
			fmt.Fprintf(&b, "  - {id: bay-%d, driver: modbus, bus: rs485-1, unit: %d, profile: ultrasonic-bay}\n", i, i)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	cfg, err := load(path)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var seen []*payload.Status
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("watch").SetProtocolVersion(4))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe(payload.StatusTopic("s", "g"), 1, func(_ mqtt.Client, m mqtt.Message) {
		st, err := payload.DecodeStatus(m.Payload())
		if err != nil {
			t.Errorf("status: %v", err)
			return
		}
		mu.Lock()
		seen = append(seen, st)
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	statuses := func() []*payload.Status {
		mu.Lock()
		defer mu.Unlock()
		return append([]*payload.Status(nil), seen...)
	}
	births := func(devices int) bool {
		for _, s := range statuses() {
			if s.Online && len(s.Devices) == devices {
				return true
			}
		}
		return false
	}

	started := make(chan *gateway.Gateway, 4)
	sup := &supervisor{path: path, stderr: io.Discard, reload: make(chan struct{}, 1), started: func(g *gateway.Gateway) { started <- g }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.run(ctx, cfg) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	<-started
	testenv.WaitFor(t, 20*time.Second, "the first birth", func() bool { return births(1) })

	write(2)
	if err := sup.requestReload(ctx); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	<-started
	testenv.WaitFor(t, 20*time.Second, "the reloaded gateway's birth", func() bool { return births(2) })
	for _, s := range statuses() {
		if !s.Online {
			t.Errorf("offline status published during the reload: %+v", s)
		}
	}

	// A real stop still says offline.
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	stopped = true
	testenv.WaitFor(t, 10*time.Second, "the offline status at shutdown", func() bool {
		s := statuses()
		return len(s) > 0 && !s[len(s)-1].Online
	})
}
