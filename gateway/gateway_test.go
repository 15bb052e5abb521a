package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

// lotConfig writes a gateway config for every bay of lot.
func lotConfig(t testing.TB, lot *modbussim.Lot, broker, extraBus, devExtra string, poll time.Duration) *config.Config {
	t.Helper()
	return lotConfigWith(t, lot, broker, extraBus, devExtra, poll, "")
}

// lotConfigWith is lotConfig with more YAML (such as rules:) appended.
func lotConfigWith(t testing.TB, lot *modbussim.Lot, broker, extraBus, devExtra string, poll time.Duration, more string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "site: test-site\ngateway: gw-1\nlog: {level: warn}\nuplink:\n  brokers: [%s]\n  reconnect_max: 1s\n", broker)
	fmt.Fprintf(&b, "outbox:\n  path: %s\nstatus:\n  listen: \"127.0.0.1:%d\"\npipeline:\n  health_interval: 1h\n", filepath.Join(dir, "outbox"), testenv.FreePort(t))
	b.WriteString("buses:\n")
	for _, bus := range lot.Buses() {
		fmt.Fprintf(&b, "  - name: %s\n    port: %s\n    baud: 19200\n    parity: even\n    stop_bits: 1\n%s", bus.Name, bus.Path, extraBus)
	}
	b.WriteString("devices:\n")
	for _, bay := range lot.Bays() {
		fmt.Fprintf(&b, "  - id: bay-%03d\n    driver: modbus\n    bus: rs485-%d\n    unit: %d\n    profile: %s\n    poll: %s\n    tags: {lot: l1, zone: z%d, bay: \"%03d\"}\n%s",
			bay.Bay, bay.Bus+1, bay.Unit, bay.Model.Profile(), poll, bay.Bus+1, bay.Bay, devExtra)
	}
	b.WriteString(more)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, opts...)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", b.String(), err)
	}
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startGateway(t *testing.T, cfg *config.Config) (*Gateway, func()) {
	t.Helper()
	gw, err := New(cfg, Options{Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	return gw, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	}
}

func unitRequests(lot *modbussim.Lot) map[int]uint64 {
	out := map[int]uint64{}
	for _, bay := range lot.Bays() {
		out[bay.Bay] = lot.Server(bay.Bus).Unit(bay.Unit).Stats().Requests
	}
	return out
}

// One of 8 devices on a bus stops answering: the other 7 keep their poll
// rate, and the dead one recovers when it answers again.
func TestDeadDeviceDoesNotStallOthers(t *testing.T) {
	broker := testenv.Mosquitto(t)
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 8, Buses: 1, Ultrasonic: 1, Seed: 7, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	const poll = 250 * time.Millisecond
	// Without per-device back-off every poll cycle would spend 300 ms
	// waiting for the dead device and the others would fall to about half
	// their rate.
	cfg := lotConfig(t, lot, broker.URL(), "    timeout: 300ms\n    backoff_max: 4s\n", "", poll)
	gw, stop := startGateway(t, cfg)
	defer stop()

	time.Sleep(1500 * time.Millisecond) // warm up
	// Over the window the dead device is probed at 0, 1, 3 and 7 s (back-off
	// 1 s doubling to 4 s): four stalls of one timeout each, against one
	// stall per poll cycle without back-off.
	const window = 8 * time.Second
	before := unitRequests(lot)
	time.Sleep(window)
	mid := unitRequests(lot)

	dead := lot.Server(0).Unit(3)
	dead.SetOffline(true)
	time.Sleep(window)
	after := unitRequests(lot)
	dead.SetOffline(false)

	for bay := 1; bay <= 8; bay++ {
		if bay == 3 {
			continue
		}
		healthy := mid[bay] - before[bay]
		during := after[bay] - mid[bay]
		if nominal := uint64(window / poll); healthy < nominal*6/10 {
			t.Skipf("bay %d: only %d of %d polls in %v before the fault: the machine is too loaded to judge poll rates", bay, healthy, nominal, window)
		}
		if float64(during) < 0.7*float64(healthy) {
			t.Errorf("bay %d: %d polls in %v while bay 3 was dead, %d before: the dead device stalled it", bay, during, window, healthy)
		}
	}
	deadPolls := after[3] - mid[3]
	if max := uint64(5); deadPolls > max {
		t.Errorf("dead bay 3 was asked %d times in %v: want at most %d with back-off", deadPolls, window, max)
	}

	// Recovery: the device is polled again and its state returns to ok.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state string
		for _, d := range gw.Snapshot().Devices {
			if d.ID == "bay-003" {
				state = d.State
			}
		}
		if state == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bay-003 did not recover after it answered again: state %q", state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// minimalConfig is a gateway with one bus and no devices, for benchmarks
// that feed the pipeline directly.
func minimalConfig(t testing.TB, broker, outboxDir string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf("site: bench\ngateway: gw-1\nuplink:\n  brokers: [%s]\n  max_inflight: 64\noutbox:\n  path: %s\n  max_bytes: 256MiB\nstatus:\n  listen: \"\"\npipeline:\n  health_interval: 1h\n", broker, outboxDir)
	cfg, err := config.Parse("bench.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A bay's LED follows its occupancy through a local rule while the uplink
// is down: the LED register is read inside the Modbus simulator.
func TestLEDFollowsOccupancyWithUplinkDown(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 4, Buses: 1, Ultrasonic: 1, Seed: 5, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	lot.Pause()
	rules, err := os.ReadFile("../firmware-config/examples/rules/bay-led.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on this port: the uplink never connects.
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	cfg := lotConfigWith(t, lot, dead, "    timeout: 300ms\n", "", 200*time.Millisecond, string(rules))
	gw, stop := startGateway(t, cfg)
	defer stop()

	waitLED := func(bay int, want uint16) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			led, err := lot.LED(bay)
			if err != nil {
				t.Fatal(err)
			}
			if led == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("bay %d: LED register is %d, want %d", bay, led, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for bay := 1; bay <= 4; bay++ {
		waitLED(bay, modbussim.LEDGreen)
	}
	lot.SetOccupied(2, true)
	waitLED(2, modbussim.LEDRed)
	lot.SetOccupied(2, false)
	waitLED(2, modbussim.LEDGreen)
	if gw.Snapshot().Uplink.Connected {
		t.Fatal("the uplink was connected: the test proves nothing about acting locally")
	}
	for _, r := range gw.Snapshot().Rules {
		if r.Name == "bay-led-occupied" && r.Fires == 0 {
			t.Errorf("rule %s never fired", r.Name)
		}
	}
}
