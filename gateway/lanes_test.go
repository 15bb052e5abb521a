package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/lane"
	"github.com/luling-edge/luling/gateway/lane/lanesim"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

const simLaneConfig = `site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["%s"], reconnect_max: 1s}
outbox: {path: %s}
status: {listen: ""}
gpio: {simulator: %s}
lots:
  - {name: p1, capacity: %d}
lanes:
  - name: p1-in
    lot: p1
    direction: in
    barrier: {open: "sim:1", close: "sim:2", opened: {pin: "sim:3", active_low: true}, closed: {pin: "sim:4", active_low: true}, motor_time: 1s}
    arming: {pin: "sim:5", active_low: true}
    safety: {pin: "sim:6", active_low: true}
    wiegand: {d0: "sim:7", d1: "sim:8"}
    debounce: 5ms
    visitors: auto
    open_time: 1s
  - name: p1-out
    lot: p1
    direction: out
    barrier: {open: "sim:11", opened: {pin: "sim:13", active_low: true}, closed: {pin: "sim:14", active_low: true}, motor_time: 1s}
    arming: {pin: "sim:15", active_low: true}
    safety: {pin: "sim:16", active_low: true}
    debounce: 5ms
    visitors: auto
    open_time: 1s
`

// laneRig is a gateway with an entry and an exit lane on simulated GPIO
// lines, each with a lanesim lane whose vehicles wait until the gateway
// has seen each loop change.
type laneRig struct {
	t       *testing.T
	srv     *simgpio.Server
	gw      *Gateway
	in, out *lanesim.Sim
	ctx     context.Context
}

// laneTiming is the simulated barrier's motor time and how long vehicles
// stay on a loop.
type laneTiming struct{ motor, settle time.Duration }

func newLaneRig(t *testing.T, broker string, capacity int, timing laneTiming) *laneRig {
	t.Helper()
	r := &laneRig{t: t, ctx: context.Background()}
	var lines []string
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 14, 15, 16} {
		lines = append(lines, fmt.Sprintf("sim:%d", n))
	}
	var mu sync.Mutex
	var sims []*lanesim.Sim
	dir, err := os.MkdirTemp("", "lanesim-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "gpio.sock")
	r.srv, err = simgpio.NewServer(lines, simgpio.ServerOptions{OnOut: func(line string, l periphgpio.Level, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sims {
			s.Output(line, l)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := simgpio.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); wg.Wait(); os.RemoveAll(dir) })

	if broker == "" {
		broker = fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	}
	gwDir := t.TempDir()
	cfg := loadConfig(t, gwDir, fmt.Sprintf(simLaneConfig, broker, filepath.Join(gwDir, "outbox"), sock, capacity))
	if r.gw, err = New(cfg, Options{Version: "test", Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.gw.store.Sync(1, []access.Credential{{ID: "res-7", Card: "7:1234"}}); err != nil {
		t.Fatal(err)
	}
	status := func(name string) func() lane.Status {
		for _, le := range r.gw.lanes.lanes {
			if le.cfg.Name == name {
				return le.l.Status
			}
		}
		t.Fatalf("no lane %s", name)
		return nil
	}
	confirm := func(name, arming string) func(context.Context, string, bool) error {
		st := status(name)
		return func(ctx context.Context, line string, active bool) error {
			deadline := time.Now().Add(20 * time.Second)
			for {
				s := st()
				if (line == arming && s.Arming == active) || (line != arming && s.Safety == active) {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("lane %s did not see %s %v within 20s", name, line, active)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	sim := func(name string, base int, closeLine string) *lanesim.Sim {
		s, err := lanesim.New(r.srv, lanesim.Config{
			Arming: fmt.Sprintf("sim:%d", base+4), Safety: fmt.Sprintf("sim:%d", base+5),
			Opened: fmt.Sprintf("sim:%d", base+2), Closed: fmt.Sprintf("sim:%d", base+3),
			Open: fmt.Sprintf("sim:%d", base), Close: closeLine,
			Motor: timing.motor, Settle: timing.settle, Patience: 10 * time.Second,
			Confirm: confirm(name, fmt.Sprintf("sim:%d", base+4)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	r.in, r.out = sim("p1-in", 1, "sim:2"), sim("p1-out", 11, "")
	mu.Lock()
	sims = append(sims, r.in, r.out)
	mu.Unlock()

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.gw.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.WaitFor(t, 10*time.Second, "the simulator's gateway link", func() bool { return r.srv.Connected() == 1 })
	return r
}

// resident presents the resident's tag at the entry lane's Wiegand
// reader, again while the lane has not granted it (as a tag reader
// repeats while the tag is in range): a frame whose pulses a loaded
// machine stretched is dropped by the reader.
func (r *laneRig) resident(ctx context.Context, card string) error {
	var in *laneEntry
	for _, le := range r.gw.lanes.lanes {
		if le.cfg.Name == "p1-in" {
			in = le
		}
	}
	granted := func() uint64 { return in.l.Status().Stats.Granted }
	before := granted()
	for range 10 {
		if err := lanesim.SendWiegand(r.srv, "sim:7", "sim:8", 7, 1234); err != nil {
			return err
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if granted() > before {
				return nil
			}
		}
	}
	return fmt.Errorf("the entry lane granted nothing for ten reads of the tag")
}

func (r *laneRig) drive(s *lanesim.Sim, v lanesim.Vehicle) lanesim.Outcome {
	r.t.Helper()
	o, err := s.Drive(r.ctx, v)
	if err != nil {
		r.t.Fatal(err)
	}
	return o
}

func (r *laneRig) lot() lane.LotState { return r.gw.lanes.lots[0].State() }

// laneEvents reads the lane events waiting in the outbox, oldest first, as
// "lane:event" (alerts as "alert:rule").
func laneEvents(t *testing.T, gw *Gateway) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msgs, _ := gw.ob.Pending(ctx, 0, 100000)
	var out []string
	for _, m := range msgs {
		b, err := payload.DecodeBatch(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range b.Records {
			switch rec.Measurement {
			case "lane":
				out = append(out, rec.Tags["lane"]+":"+rec.Tags["event"])
			case "alert":
				out = append(out, "alert:"+rec.Tags["rule"])
			}
		}
	}
	return out
}

// count returns how often each entry occurs in events.
func count(events []string) map[string]int {
	m := map[string]int{}
	for _, e := range events {
		m[e]++
	}
	return m
}

// The whole lane on simulated lines: loops, barrier motor and position
// inputs, a Wiegand reader, through the gateway's real GPIO path.
func TestLaneOnSimulatedGPIO(t *testing.T) {
	r := newLaneRig(t, "", 1, laneTiming{motor: 150 * time.Millisecond, settle: 30 * time.Millisecond})

	// A visitor takes the last bay.
	if o := r.drive(r.in, lanesim.Vehicle{}); o.Passed != 1 {
		t.Fatalf("visitor into a free lot: %+v", o)
	}
	testenv.WaitFor(t, 10*time.Second, "the entry barrier down", func() bool { return r.in.WaitBarrier(r.ctx, false, 0) })
	if st := r.lot(); st.Occupied != 1 || !st.Full {
		t.Fatalf("lot %+v after one entry", st)
	}
	// The next visitor is refused: the lot is full.
	_, _, movesBefore := r.in.Barrier()
	if o := r.drive(r.in, lanesim.Vehicle{}); !o.Refused {
		t.Fatalf("visitor into a full lot: %+v", o)
	}
	if _, _, moves := r.in.Barrier(); moves != movesBefore {
		t.Fatalf("the barrier moved for a refused visitor")
	}
	// A resident still gets in.
	if o := r.drive(r.in, lanesim.Vehicle{Card: "7:1234", Present: r.resident}); o.Passed != 1 {
		t.Fatalf("resident into a full lot: %+v", o)
	}
	// A driver stops under the exit barrier for longer than open_time:
	// the barrier stays up.
	if o := r.drive(r.out, lanesim.Vehicle{Park: 2500 * time.Millisecond}); o.Passed != 1 {
		t.Fatalf("parked exit: %+v", o)
	}
	// A second car follows closely: a tailgate, and both are counted out.
	testenv.WaitFor(t, 10*time.Second, "the exit barrier down", func() bool { return r.out.WaitBarrier(r.ctx, false, 0) })
	if o := r.drive(r.out, lanesim.Vehicle{Tailgater: true}); o.Passed != 2 {
		t.Fatalf("tailgate: %+v", o)
	}
	testenv.WaitFor(t, 10*time.Second, "the exit barrier down", func() bool { return r.out.WaitBarrier(r.ctx, false, 0) })
	if st := r.lot(); st.Occupied != 0 {
		t.Fatalf("lot %+v after 2 in and 3 out (never below 0)", st)
	}
	// The exit barrier jams: the vehicle backs out, the lane reports a fault.
	r.out.SetStuck(true)
	if o := r.drive(r.out, lanesim.Vehicle{}); !o.Refused {
		t.Fatalf("stuck barrier: %+v", o)
	}
	testenv.WaitFor(t, 10*time.Second, "a lane fault", func() bool { return count(laneEvents(t, r.gw))["p1-out:fault"] == 1 })
	snap := r.gw.Snapshot()
	if len(snap.Lanes) != 2 || snap.Lanes[1].Name != "p1-out" || snap.Lanes[1].State != lane.StateFault || snap.Lanes[1].Tailgates != 1 ||
		snap.Lanes[0].Passed != 2 || len(snap.Lots) != 1 || snap.Lots[0].Occupied != 0 || snap.Lots[0].Free != 1 {
		t.Errorf("status lanes %+v lots %+v", snap.Lanes, snap.Lots)
	}
	if p := snap.Problems; !slices.ContainsFunc(p, func(s string) bool { return strings.HasPrefix(s, "lane p1-out: the barrier did not reach") }) {
		t.Errorf("status problems %q: want the jammed exit barrier", p)
	}

	ev := laneEvents(t, r.gw)
	c := count(ev)
	want := map[string]int{
		// Refused for a full lot: the visitor, and the resident on arrival
		// before the tag was read.
		"p1-in:passed": 2, "p1-in:denied": 2, "p1-out:passed": 2, "p1-out:tailgate": 1, "p1-out:fault": 1, "p1-out:close_blocked": 1,
		"alert:lane_tailgate": 1, "alert:lane_fault": 1, "p1-in:tailgate": 0, "p1-out:timeout": 0,
	}
	for k, n := range want {
		if c[k] != n {
			t.Errorf("%d %s events, want %d; events:\n%v", c[k], k, n, ev)
		}
	}
	// The parked vehicle: no close was commanded until it had passed.
	var out []string
	for _, e := range ev {
		if e[:7] == "p1-out:" {
			out = append(out, e[7:])
		}
	}
	first := slices.Index(out, "passed")
	if first < 0 || slices.Contains(out[:first], "closing") {
		t.Errorf("exit lane closed before the parked vehicle passed: %v", out)
	}
}

// eventSubscriber collects the lane records the gateway publishes, once
// per sequence number, through broker restarts (a persistent session).
type eventSubscriber struct {
	mu    sync.Mutex
	seqs  map[uint64]bool
	lanes []payload.Record
}

func subscribeEvents(t *testing.T, url string) *eventSubscriber {
	t.Helper()
	es := &eventSubscriber{seqs: map[uint64]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("lane-test-sub").SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).SetResumeSubs(true)
	handle := func(_ mqtt.Client, m mqtt.Message) {
		b, err := payload.DecodeBatch(m.Payload())
		if err != nil {
			t.Errorf("undecodable events message: %v", err)
			return
		}
		es.mu.Lock()
		defer es.mu.Unlock()
		if es.seqs[b.Seq] {
			return
		}
		es.seqs[b.Seq] = true
		for _, r := range b.Records {
			if r.Measurement == "lane" {
				es.lanes = append(es.lanes, r)
			}
		}
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("gw/v1/s/g/events", 1, handle) })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return es
}

// passages counts the passed and tailgate events per lane.
func (es *eventSubscriber) passages() map[string]int {
	es.mu.Lock()
	defer es.mu.Unlock()
	out := map[string]int{}
	for _, r := range es.lanes {
		if ev := r.Tags["event"]; ev == lane.EventPassed || ev == lane.EventTailgate {
			out[r.Tags["lane"]]++
		}
	}
	return out
}

// 1,000 vehicles in and 1,000 out, some residents with tags, some with a
// tailgater, through the entry and exit lanes at once, with the broker
// down for part of the run: the lot's count is entries minus exits, and
// every passage reaches the broker.
func TestLaneCountsThousandVehicles(t *testing.T) {
	if os.Getenv("LULING_REQUIRE_SERVICES") == "" && testing.Short() {
		t.Skip("long: 2,000 vehicles")
	}
	n := 1000
	broker := testenv.Mosquitto(t)
	sub := subscribeEvents(t, broker.URL())
	r := newLaneRig(t, broker.URL(), 5000, laneTiming{motor: 20 * time.Millisecond, settle: 10 * time.Millisecond})
	testenv.WaitFor(t, 20*time.Second, "the uplink connected", func() bool { return r.gw.up.snapshot().Connected })

	var mu sync.Mutex
	var in, out, entries int
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the entry lane
		defer wg.Done()
		for i := range n {
			v := lanesim.Vehicle{Tailgater: i%17 == 3}
			if i%25 == 0 {
				v.Card, v.Present = "7:1234", r.resident
			}
			o, err := r.in.Drive(ctx, v)
			if err != nil || o.Refused {
				fail(fmt.Errorf("entry %d: %+v %v", i, o, err))
				cancel()
				return
			}
			mu.Lock()
			in += o.Passed
			entries++
			mu.Unlock()
		}
	}()
	go func() { // the exit lane: only vehicles that are inside leave
		defer wg.Done()
		for i := 0; i < n; {
			mu.Lock()
			inside, done := in-out, entries == n
			mu.Unlock()
			tailgate := i%19 == 5
			if inside < 2 && !done {
				select {
				case <-time.After(5 * time.Millisecond):
					continue
				case <-ctx.Done():
					return
				}
			}
			if inside < 2 {
				tailgate = false
				if inside < 1 {
					return
				}
			}
			o, err := r.out.Drive(ctx, lanesim.Vehicle{Tailgater: tailgate})
			if err != nil || o.Refused {
				fail(fmt.Errorf("exit %d: %+v %v", i, o, err))
				cancel()
				return
			}
			mu.Lock()
			out += o.Passed
			mu.Unlock()
			i++
		}
	}()
	// The uplink goes down for a part of the run.
	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil {
			return n
		}
		return entries
	}
	testenv.WaitFor(t, 10*time.Minute, "a third of the entries", func() bool { return progress() >= n/3 })
	broker.Stop()
	testenv.WaitFor(t, 30*time.Second, "the uplink down", func() bool { return !r.gw.up.snapshot().Connected })
	testenv.WaitFor(t, 10*time.Minute, "two thirds of the entries", func() bool { return progress() >= 2*n/3 })
	broker.Start()
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	st := r.lot()
	t.Logf("%d vehicles in, %d out (%d entries); lot %+v", in, out, entries, st)
	if st.Occupied != in-out || out < n {
		t.Fatalf("lot count %d, want %d in - %d out = %d", st.Occupied, in, out, in-out)
	}
	testenv.WaitFor(t, 60*time.Second, "every passage at the broker", func() bool {
		p := sub.passages()
		return p["p1-in"] == in && p["p1-out"] == out
	})
	if p := sub.passages(); p["p1-in"] != in || p["p1-out"] != out {
		t.Fatalf("passages at the broker %v, want in %d out %d", p, in, out)
	}
	// The last passage record carries the count.
	sub.mu.Lock()
	defer sub.mu.Unlock()
	var last payload.Record
	for _, rec := range sub.lanes {
		if rec.Fields["occupied"].Valid() && rec.Time.After(last.Time) {
			last = rec
		}
	}
	if got := last.Fields["occupied"].Int(); got != int64(in-out) {
		t.Fatalf("last passage record says %d occupied, want %d", got, in-out)
	}
}

// The nightly reset is a rule: every 24 h (aligned to the clock) it runs
// lot.count.set, which sets the count and records a count_set event.
func TestNightlyCountResetRule(t *testing.T) {
	dir := t.TempDir()
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
lots:
  - {name: p1, capacity: 40}
rules:
  - name: nightly-count-reset
    trigger: {every: 24h}
    actions:
      - command: {name: lot.count.set, args: {lot: p1, occupied: "2"}}
`, testenv.FreePort(t), filepath.Join(dir, "outbox")))
	clk := clock.NewFake(time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC))
	gw, err := New(cfg, Options{Version: "test", Logger: quietLogger(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	lot := gw.lanes.lots[0]
	lot.Add(17, clk.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 20*time.Second, "the reset at midnight", func() bool {
		if lot.State().Occupied == 2 {
			return true
		}
		if clk.Now().Before(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)) {
			clk.Advance(time.Hour)
		}
		return false
	})
	if at := lot.State().Time; !at.Equal(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("reset at %v, want midnight", at)
	}
	testenv.WaitFor(t, 10*time.Second, "the count_set event", func() bool { return count(laneEvents(t, gw))[":count_set"] == 1 })
}
