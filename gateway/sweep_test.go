package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
)

// readerLine serves n simulated OSDP readers (addresses 1..n) on a fresh
// pty at baud until the test ends; it returns the readers and the pty's
// path for the gateway.
func readerLine(t testing.TB, baud, n int, hook func(addr byte, reply []byte, at time.Time)) ([]*osdpsim.Reader, string) {
	t.Helper()
	line, err := osdpsim.New(osdpsim.Config{Name: "doors", Baud: baud, OnReply: hook})
	if err != nil {
		t.Fatal(err)
	}
	readers := make([]*osdpsim.Reader, n)
	for i := range readers {
		if readers[i], err = line.Add(osdpsim.ReaderConfig{Addr: byte(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyDoors"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); line.Serve(ctx, pair.Master) }()
	t.Cleanup(func() { cancel(); pair.Close(); <-served })
	return readers, pair.Path()
}

// readersYAML is the buses and devices of n OSDP readers reader-1..n on
// one line, with a scheduled poll of poll.
func readersYAML(port string, baud, n int, poll string) string {
	s := fmt.Sprintf("buses:\n  - {name: rs485-doors, port: %s, baud: %d, timeout: 200ms}\ndevices:\n", port, baud)
	for i := 1; i <= n; i++ {
		s += fmt.Sprintf("  - {id: reader-%d, driver: osdp, bus: rs485-doors, unit: %d, poll: %s, max_silence: 48h}\n", i, i, poll)
	}
	return s
}

// With eight readers on a 115200 baud line, a card reaches its door
// through the line's idle-time polling: the readers' own scheduled polls
// (every 24 h, spread over the first day) have not run for the card's
// reader, yet the strike opens, every reader on the line is polled, and
// the idle-time polls publish no readings.
func TestCardOpensDoorWithEightReadersOnTheLine(t *testing.T) {
	readers, port := readerLine(t, 115200, 8, nil)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
%sdoors:
  - name: lobby
    readers: [reader-5]
    strike: STRIKE
    unlock_time: 1s
`, testenv.FreePort(t), filepath.Join(dir, "outbox"), readersYAML(port, 115200, 8, "24h"))
	var vp pins
	gw, stop := runDoorGateway(t, dir, yaml, &vp)
	defer stop()
	ctx := context.Background()
	if res, err := gw.exec.Execute(ctx, "credentials.sync", map[string]any{"version": 1,
		"credentials": `[{"id":"alice","card":"12:3456"}]`}); err != nil {
		t.Fatalf("credentials.sync: %v (%v)", err, res)
	}
	strike := vp.get("STRIKE")
	readers[4].PresentWiegand26(12, 3456)
	testenv.WaitFor(t, 20*time.Second, "the strike to open", func() bool { return strike.Last().Level == periphgpio.High })
	for _, d := range gw.devices {
		if d.spec.ID == "reader-5" && d.polls.Load() != 0 {
			t.Fatalf("reader-5 had %d scheduled polls: the test cannot tell idle-time polling from them", d.polls.Load())
		}
	}
	testenv.WaitFor(t, 20*time.Second, "every reader on the line polled", func() bool {
		for _, r := range readers {
			if r.Counts().ByCode[osdp.CmdPoll] < 2 {
				return false
			}
		}
		return true
	})
	// Idle-time polls publish no readings: the readers' status comes from
	// their scheduled polls alone (one so far: reader-1's first).
	if n := gw.readings.Load(); n > 1 {
		t.Errorf("%d reader readings after %d polls on the line, want at most 1 (the scheduled poll's)", n, readers[0].Counts().ByCode[osdp.CmdPoll])
	}
	if got := accessResults(t, gw); len(got) != 1 || got[0] != "granted alice ok" {
		t.Errorf("access events %q, want alice granted", got)
	}
}

// Only card readers that keep idle_poll on are swept, grouped by their
// line; Modbus devices, on their own line, keep their scheduled polls alone.
func TestSweepsTakeOnlyIdlePolledReaders(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`site: s
gateway: g
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
%s  - {id: lobby-exit, driver: osdp, bus: rs485-doors, unit: 9, options: {idle_poll: false}}
  - {id: bay-001, driver: modbus, bus: rs485-bays, unit: 1, profile: ultrasonic-bay, poll: 1s}
`, testenv.FreePort(t), filepath.Join(dir, "outbox"), readersYAML("/dev/null-doors", 115200, 3, "200ms"))
	yaml = strings.Replace(yaml, "devices:\n", "  - {name: rs485-bays, port: /dev/null-bays, baud: 19200}\ndevices:\n", 1)
	gw, err := New(loadConfig(t, dir, yaml), Options{Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.ob.Close()
	sw := gw.sweeps()
	if len(sw) != 1 || sw[0].bus.Name() != "rs485-doors" {
		t.Fatalf("%d sweeps, want one, of rs485-doors", len(sw))
	}
	var ids []string
	for _, d := range sw[0].devs {
		ids = append(ids, d.spec.ID)
	}
	if got := strings.Join(ids, ","); got != "reader-1,reader-2,reader-3" {
		t.Errorf("swept devices %s, want reader-1,reader-2,reader-3", got)
	}
}
