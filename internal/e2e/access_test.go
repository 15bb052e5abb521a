package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
)

// A door rehearsed without a board: gatewayd takes its GPIO lines from the
// simulator (gpio.simulator) and its card reader is an OSDP reader on a pty.
// A granted card energizes the strike on the simulated line, and the door
// contact opening without a grant reaches InfluxDB as a forced door.
func TestDoorOnSimulatedGPIOEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	const strike, contact = "gpiochip0:17", "gpiochip0:22"
	sockDir, err := os.MkdirTemp("", "e2e-gpio-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "gpio.sock")
	sim, err := simgpio.NewServer([]string{strike, contact}, simgpio.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := simgpio.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	line, err := osdpsim.New(osdpsim.Config{Name: "doors", Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := line.Add(osdpsim.ReaderConfig{Addr: 1})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyDOOR"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sim.Serve(ctx, ln) }()
	go func() { defer wg.Done(); line.Serve(ctx, pair.Master) }()
	t.Cleanup(func() { cancel(); pair.Close(); wg.Wait() })

	w := newWorld(t, worldOptions{bays: 1, buses: 1, poll: time.Second,
		moreBuses:   fmt.Sprintf("  - {name: rs485-doors, port: %s, baud: 115200, timeout: 300ms}\n", pair.Path()),
		moreDevices: "  - {id: reader-1, driver: osdp, bus: rs485-doors, unit: 1, poll: 200ms, tags: {door: lobby}}\n",
		extra: fmt.Sprintf("doors:\n  - {name: lobby, readers: [reader-1], strike: %q, contact: {pin: %q, active_low: true}, unlock_time: 1s}\n"+
			"gpio: {simulator: %s}\n", strike, contact, sock)})
	deadline := time.Now().Add(20 * time.Second)
	for !w.cloudStats().Online {
		if time.Now().After(deadline) {
			t.Fatal("cloudd never saw the gateway online")
		}
		time.Sleep(100 * time.Millisecond)
	}
	creds, _ := json.Marshal(`[{"id":"alice","card":"12:3456"}]`)
	resp := w.callAPI("POST", "/api/v1/gateways/e2e/gw-1/commands",
		`{"name":"credentials.sync","args":{"version":1,"credentials":`+string(creds)+`},"timeout":"15s"}`)
	var reply map[string]any
	json.NewDecoder(resp.Body).Decode(&reply)
	resp.Body.Close()
	if reply["status"] != "ok" {
		t.Fatalf("credentials.sync: %v", reply)
	}
	w.waitDevice("reader-1", func(d map[string]any) bool { return d["state"] == "ok" })

	level := func(name string) gpio.Level { l, _ := sim.Level(name); return l }
	reader.PresentWiegand26(12, 3456)
	testenv.WaitFor(t, 15*time.Second, "the strike energized on the simulated line", func() bool { return level(strike) == gpio.High })
	testenv.WaitFor(t, 15*time.Second, "the strike released after unlock_time", func() bool { return level(strike) == gpio.Low })
	outs := sim.Outputs(strike)
	if len(outs) < 3 || outs[len(outs)-2].Level != gpio.High || outs[len(outs)-1].Level != gpio.Low {
		t.Errorf("strike outputs %v: want low at start, then high and low for the grant", outs)
	}

	forcedAt := time.Now()
	sim.Drive(contact, gpio.Low) // opened, no grant
	q := `SELECT "state", "open" FROM "door" WHERE "door"='lobby' AND time >= ` + strconv.FormatInt(forcedAt.UnixNano(), 10) + ` GROUP BY *`
	testenv.WaitFor(t, 20*time.Second, "a forced door in InfluxDB", func() bool {
		series, err := w.influx.Query(w.db, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(series) == 1 && len(series[0].Values) > 0 && series[0].Values[0][1] == "forced" && series[0].Values[0][2] == true
	})
	series, err := w.influx.Query(w.db, `SELECT "credential" FROM "access" WHERE "door"='lobby' GROUP BY *`)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || series[0].Tags["result"] != "granted" || series[0].Tags["reader"] != "reader-1" || series[0].Values[0][1] != "alice" {
		t.Errorf("access points %+v: want alice granted at reader-1", series)
	}
}
