package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/gateway/lane/lanesim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
)

// An entry and an exit lane run by gatewayd on simulated GPIO lines, with
// an OSDP tag reader at the entry, counting lot l1 whose bays also have
// sensors: a visitor and a resident get in, the next visitor is refused
// (full), two cars leave on one opening, and an operator corrects the
// count. The lane events and the lot's combined occupancy reach InfluxDB.
func TestLaneEventsReachInfluxDB(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	lines := []string{"ln:1", "ln:3", "ln:4", "ln:5", "ln:6", "ln:11", "ln:13", "ln:14", "ln:15", "ln:16"}
	sockDir, err := os.MkdirTemp("", "e2e-lane-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "gpio.sock")
	var mu sync.Mutex
	var sims []*lanesim.Sim
	srv, err := simgpio.NewServer(lines, simgpio.ServerOptions{OnOut: func(line string, l gpio.Level, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sims {
			s.Output(line, l)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	newSim := func(base int) *lanesim.Sim {
		s, err := lanesim.New(srv, lanesim.Config{
			Open: fmt.Sprintf("ln:%d", base), Opened: fmt.Sprintf("ln:%d", base+2), Closed: fmt.Sprintf("ln:%d", base+3),
			Arming: fmt.Sprintf("ln:%d", base+4), Safety: fmt.Sprintf("ln:%d", base+5),
			Motor: 600 * time.Millisecond, Settle: 300 * time.Millisecond, Patience: 8 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	in, out := newSim(1), newSim(11)
	mu.Lock()
	sims = []*lanesim.Sim{in, out}
	mu.Unlock()
	ln, err := simgpio.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	osdpLine, err := osdpsim.New(osdpsim.Config{Name: "lanes", Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := osdpLine.Add(osdpsim.ReaderConfig{Addr: 1})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyLANE"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	go func() { defer wg.Done(); osdpLine.Serve(ctx, pair.Master) }()
	t.Cleanup(func() { cancel(); pair.Close(); wg.Wait() })

	pin := func(n int) string { return fmt.Sprintf("{pin: \"ln:%d\", active_low: true}", n) }
	lane := func(name, dir string, base int, readers string) string {
		return fmt.Sprintf("  - {name: %s, lot: l1, direction: %s, visitors: auto, debounce: 20ms, open_time: 20s%s,\n"+
			"     barrier: {open: \"ln:%d\", opened: %s, closed: %s, motor_time: 5s}, arming: %s, safety: %s}\n",
			name, dir, readers, base, pin(base+2), pin(base+3), pin(base+4), pin(base+5))
	}
	w := newWorld(t, worldOptions{bays: 2, buses: 1, poll: time.Second,
		moreBuses:   fmt.Sprintf("  - {name: rs485-lanes, port: %s, baud: 115200, timeout: 300ms}\n", pair.Path()),
		moreDevices: "  - {id: tag-in, driver: osdp, bus: rs485-lanes, unit: 1, poll: 200ms}\n",
		extra: "lots:\n  - {name: l1, capacity: 2}\nlanes:\n" + lane("l1-in", "in", 1, ", readers: [tag-in]") + lane("l1-out", "out", 11, "") +
			fmt.Sprintf("gpio: {simulator: %s}\n", sock)})
	testenv.WaitFor(t, 20*time.Second, "cloudd to see the gateway online", func() bool { return w.cloudStats().Online })
	creds, _ := json.Marshal(`[{"id":"alice","card":"12:3456"}]`)
	command := func(body string) map[string]any {
		resp := w.callAPI("POST", "/api/v1/gateways/e2e/gw-1/commands", body)
		defer resp.Body.Close()
		var reply map[string]any
		json.NewDecoder(resp.Body).Decode(&reply)
		if reply["status"] != "ok" {
			t.Fatalf("command %s: %v", body, reply)
		}
		return reply
	}
	command(`{"name":"credentials.sync","args":{"version":1,"credentials":` + string(creds) + `},"timeout":"15s"}`)
	w.waitDevice("tag-in", func(d map[string]any) bool { return d["state"] == "ok" })
	testenv.WaitFor(t, 20*time.Second, "the simulator's gateway link", func() bool { return srv.Connected() == 1 })

	drive := func(s *lanesim.Sim, v lanesim.Vehicle) lanesim.Outcome {
		t.Helper()
		o, err := s.Drive(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		if !s.WaitBarrier(context.Background(), false, 20*time.Second) {
			t.Fatal("the barrier did not come down")
		}
		return o
	}
	if o := drive(in, lanesim.Vehicle{}); o.Passed != 1 {
		t.Fatalf("visitor: %+v", o)
	}
	present := func(context.Context, string) error { reader.PresentWiegand26(12, 3456); return nil }
	if o := drive(in, lanesim.Vehicle{Card: "12:3456", Present: present}); o.Passed != 1 {
		t.Fatalf("resident: %+v", o)
	}
	if o := drive(in, lanesim.Vehicle{}); !o.Refused {
		t.Fatalf("visitor into a full lot: %+v", o)
	}
	if o := drive(out, lanesim.Vehicle{Tailgater: true}); o.Passed != 2 {
		t.Fatalf("exit with a tailgater: %+v", o)
	}
	command(`{"name":"lot.count.set","args":{"lot":"l1","occupied":1},"timeout":"15s"}`)

	events := func() map[string]int {
		series, err := w.influx.Query(w.db, `SELECT count("state") FROM "lane" GROUP BY "lane", "event"`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, s := range series {
			if len(s.Values) > 0 {
				n, _ := s.Values[0][1].(json.Number).Int64()
				out[s.Tags["lane"]+":"+s.Tags["event"]] = int(n)
			}
		}
		return out
	}
	want := map[string]int{"l1-in:passed": 2, "l1-out:passed": 1, "l1-out:tailgate": 1, "l1-out:reopened": 1}
	var got map[string]int
	deadline := time.Now().Add(30 * time.Second)
	for ok := false; !ok; {
		got, ok = events(), true
		for k, n := range want {
			ok = ok && got[k] == n
		}
		ok = ok && got["l1-in:denied"] >= 1
		if !ok && time.Now().After(deadline) {
			t.Fatalf("lane events in InfluxDB %v, want %v and a denial", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	testenv.WaitFor(t, 30*time.Second, "the count correction in InfluxDB", func() bool {
		series, err := w.influx.Query(w.db, `SELECT "occupied", "previous" FROM "lane" WHERE "lot" = 'l1' AND "event" = 'count_set'`)
		if err != nil {
			t.Fatal(err)
		}
		return len(series) == 1 && len(series[0].Values) == 1 &&
			fmt.Sprint(series[0].Values[0][1]) == "1" && fmt.Sprint(series[0].Values[0][2]) == "0"
	})
	// The resident arrived as a visitor (the lot was not full) and showed
	// the tag: it passed as alice.
	series, err := w.influx.Query(w.db, `SELECT "credential", "reason" FROM "lane" WHERE "lane" = 'l1-in' AND "event" = 'passed'`)
	if err != nil {
		t.Fatal(err)
	}
	var creds2 []string
	for _, s := range series {
		for _, v := range s.Values {
			creds2 = append(creds2, fmt.Sprint(v[1], "/", v[2]))
		}
	}
	if fmt.Sprint(creds2) != "[visitor/visitor alice/ok]" {
		t.Errorf("entry passages %v: want the visitor, then alice", creds2)
	}
	// The whole lot's occupancy comes from the count, combined with the bays' zones.
	testenv.WaitFor(t, 30*time.Second, "parking_lot from the count", func() bool {
		series, err := w.influx.Query(w.db, `SELECT last("occupied"), last("source"), last("capacity") FROM "parking_lot" WHERE "lot" = 'l1' AND "zone" = ''`)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) != 1 || len(series[0].Values) != 1 {
			return false
		}
		v := series[0].Values[0]
		return fmt.Sprint(v[1]) == "1" && v[2] == "combined" && fmt.Sprint(v[3]) == "2"
	})
}
