package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// gpioSim serves lines on a fresh socket until the test ends.
func gpioSim(t *testing.T, lines ...string) (*simgpio.Server, string) {
	t.Helper()
	return gpioSimWith(t, simgpio.ServerOptions{}, lines...)
}

// gpioSimWith is gpioSim with the server's options.
func gpioSimWith(t testing.TB, opts simgpio.ServerOptions, lines ...string) (*simgpio.Server, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpiosim-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gpio.sock")
	srv, err := simgpio.NewServer(lines, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := simgpio.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); wg.Wait(); os.RemoveAll(dir) })
	return srv, path
}

func loadConfig(t *testing.T, dir, src string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const simDoorConfig = `site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
gpio: {simulator: %s}
doors:
  - name: lobby
    wiegand: {d0: "gpiochip0:5", d1: "gpiochip0:6"}
    strike: "gpiochip0:17"
    contact: {pin: "gpiochip0:22", active_low: true}
    exit: {pin: "gpiochip0:27", active_low: true}
    unlock_time: 1s
`

// With gpio.simulator the door runs on the simulator's lines through the
// usual path: the exit button unlocks the strike (seen by the simulator),
// and the contact opening with no grant is a forced door.
func TestDoorOnSimulatedGPIO(t *testing.T) {
	srv, sock := gpioSim(t, "gpiochip0:5", "gpiochip0:6", "gpiochip0:17", "gpiochip0:22", "gpiochip0:27")
	dir := t.TempDir()
	cfg := loadConfig(t, dir, fmt.Sprintf(simDoorConfig, testenv.FreePort(t), filepath.Join(dir, "outbox"), sock))
	gw, err := New(cfg, Options{Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	defer func() { cancel(); <-done }()

	strikeOn := func() bool { l, _ := srv.Level("gpiochip0:17"); return l == periphgpio.High }
	testenv.WaitFor(t, 10*time.Second, "the door's state at start", func() bool {
		return strings.Contains(strings.Join(doorStates(t, gw), ","), "closed")
	})
	srv.Drive("gpiochip0:27", periphgpio.Low) // exit pressed
	testenv.WaitFor(t, 10*time.Second, "the strike energized on the simulator", strikeOn)
	srv.Drive("gpiochip0:27", periphgpio.High)
	testenv.WaitFor(t, 10*time.Second, "the strike released after unlock_time", func() bool { return !strikeOn() })

	srv.Drive("gpiochip0:22", periphgpio.Low) // opened with no grant (the contact is active low)
	testenv.WaitFor(t, 10*time.Second, "a forced door record", func() bool {
		return strings.Contains(strings.Join(doorStates(t, gw), ","), "forced")
	})
	if states := doorStates(t, gw); states[0] != "closed" || states[len(states)-1] != "forced" {
		t.Errorf("door states %v: want closed first and forced last", states)
	}
	if strikeOn() {
		t.Error("the strike opened for a forced door")
	}
}

// A door line the simulator does not serve stops New with the line named.
func TestSimulatedGPIOLineNotServed(t *testing.T) {
	_, sock := gpioSim(t, "gpiochip0:5", "gpiochip0:6", "gpiochip0:17", "gpiochip0:22")
	dir := t.TempDir()
	cfg := loadConfig(t, dir, fmt.Sprintf(simDoorConfig, testenv.FreePort(t), filepath.Join(dir, "outbox"), sock))
	gw, err := New(cfg, Options{Version: "test", Logger: quietLogger()})
	if err == nil {
		gw.ob.Close()
		t.Fatal("New succeeded without the exit button's line")
	}
	if !strings.Contains(err.Error(), `door lobby: exit: simgpio: line "gpiochip0:27"`) || !strings.Contains(err.Error(), "not served") {
		t.Errorf("err = %v: want the door, the line and not served", err)
	}
}

// doorStates reads the door events waiting in the outbox, oldest first.
func doorStates(t *testing.T, gw *Gateway) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	msgs, _ := gw.ob.Pending(ctx, 0, 1000)
	var out []string
	for _, m := range msgs {
		b, err := payload.DecodeBatch(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			if r.Measurement == "door" {
				out = append(out, r.Fields["state"].Str())
			}
		}
	}
	return out
}
