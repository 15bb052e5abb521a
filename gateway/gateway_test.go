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
	"github.com/luling-edge/luling/internal/clock"
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
	return startGatewayWith(t, cfg, Options{})
}

// startGatewayWith runs a gateway with opts (its version and logger set
// here) until the returned stop is called.
func startGatewayWith(t *testing.T, cfg *config.Config, opts Options) (*Gateway, func()) {
	t.Helper()
	opts.Version, opts.Logger = "test", quietLogger()
	gw, err := New(cfg, opts)
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

// devicePolls returns each device's poll and skip counts by id.
func devicePolls(gw *Gateway) (polls, skipped map[string]uint64) {
	polls, skipped = map[string]uint64{}, map[string]uint64{}
	for _, d := range gw.Snapshot().Devices {
		polls[d.ID], skipped[d.ID] = d.Polls, d.Skipped
	}
	return polls, skipped
}

// One of four devices on a bus stops answering: the others keep every poll
// of their schedule and the dead one is asked only when its back-off (1 s,
// doubling to 4 s) lets a probe through, so it takes four of the line's
// turns in 8 s instead of 16; it recovers when it answers again. The
// schedule runs on the gateway's fake clock, so that the test judges it
// exactly whatever the machine's load; the serial line and its timeouts
// stay real.
func TestDeadDeviceDoesNotStallOthers(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 4, Buses: 1, Ultrasonic: 1, Seed: 7, Dir: t.TempDir(),
		Line: modbussim.Line{Baud: 115200}})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	lot.Pause()
	const poll = 500 * time.Millisecond
	// No broker: the uplink keeps retrying, which the test does not need.
	// The reply timeout runs on the real clock: generous, so that a live
	// bay's reply on a loaded machine is not taken for a dead one.
	noBroker := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	cfg := lotConfig(t, lot, noBroker, "    timeout: 300ms\n    backoff_max: 4s\n", "", poll)
	for i := range cfg.Buses {
		cfg.Buses[i].Baud = 115200
	}
	clk := clock.NewFake(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	gw, stop := startGatewayWith(t, cfg, Options{Clock: clk})
	defer stop()

	// Idle, the gateway waits on the clock in the bus's poll schedule, the
	// health ticker, the rules engine's tick and the uplink's reconnect
	// back-off. First polls are spread over the interval, so each step of
	// poll/4 makes one device due; the next step waits until it is done.
	const bays = 4
	idle := 1 + 3
	step := poll / bays
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only stops a hung test
	defer cancel()
	advance := func(d time.Duration) {
		t.Helper()
		for range d / step {
			if err := clk.BlockUntilContext(ctx, idle); err != nil {
				t.Fatalf("the gateway did not come back to wait on the clock: %d of %d waiters", clk.Waiters(), idle)
			}
			clk.Advance(step)
		}
		if err := clk.BlockUntilContext(ctx, idle); err != nil {
			t.Fatalf("the gateway did not come back to wait on the clock: %d of %d waiters", clk.Waiters(), idle)
		}
	}
	advance(time.Second) // warm up

	const window = 8 * time.Second
	const perWindow = uint64(window / poll)
	polls0, _ := devicePolls(gw)
	req0 := unitRequests(lot)
	advance(window)
	polls1, skip1 := devicePolls(gw)
	req1 := unitRequests(lot)

	dead := lot.Server(0).Unit(3)
	deadLine0 := gw.buses[0].b.Device("bay-003").Stats()
	dead.SetOffline(true)
	advance(window)
	deadLine := gw.buses[0].b.Device("bay-003").Stats()
	polls2, skip2 := devicePolls(gw)
	req2 := unitRequests(lot)
	dead.SetOffline(false)

	for bay := 1; bay <= bays; bay++ {
		id := fmt.Sprintf("bay-%03d", bay)
		if n := polls1[id] - polls0[id]; n != perWindow {
			t.Errorf("%s: %d polls in %v with every device answering, want %d", id, n, window, perWindow)
		}
		if n := polls2[id] - polls1[id]; n != perWindow {
			t.Errorf("%s: %d polls in %v while bay 3 was dead, want %d", id, n, window, perWindow)
		}
		if bay == 3 {
			continue
		}
		if healthy, during := req1[bay]-req0[bay], req2[bay]-req1[bay]; during != healthy || healthy == 0 {
			t.Errorf("bay %d: %d requests on the line while bay 3 was dead, %d before: want the same", bay, during, healthy)
		}
	}
	// Probes at 0, 1, 3 and 7 s into the window, each a timeout on the
	// line; the other 12 polls are skipped without touching it.
	if n := deadLine.Timeouts - deadLine0.Timeouts; n != 4 {
		t.Errorf("dead bay 3 missed %d replies on the line in %v, want 4: four probes with back-off", n, window)
	}
	if n := skip2["bay-003"] - skip1["bay-003"]; n != perWindow-4 {
		t.Errorf("bay 3: %d polls skipped while backing off, want %d", n, perWindow-4)
	}

	// Recovery: the next probe (11 s after the first miss) finds the
	// device answering, and its state returns to ok.
	state := func() string {
		for _, d := range gw.Snapshot().Devices {
			if d.ID == "bay-003" {
				return d.State
			}
		}
		return ""
	}
	for waited := time.Duration(0); state() != "ok"; waited += poll {
		if waited > 5*time.Second {
			t.Fatalf("bay-003 did not recover after it answered again: state %q", state())
		}
		advance(poll)
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
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("bay %d's LED register to read %d", bay, want), func() bool {
			led, err := lot.LED(bay)
			return err == nil && led == want
		})
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
		if r.Name == "bay-led" && r.Fires == 0 {
			t.Errorf("rule %s never fired", r.Name)
		}
	}
}
