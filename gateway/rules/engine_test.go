package rules

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/payload"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestLEDFollowsOccupancy: with the bay-led example, each bay's LED turns
// red when a car arrives and green when it leaves, once per change, and
// readings that repeat the state (heartbeats) write nothing.
func TestLEDFollowsOccupancy(t *testing.T) {
	clk := newFakeClock()
	w := newFakeWriter()
	e := mustEngine(t, example(t, "bay-led.yaml"), Options{Clock: clk, Writer: w})
	run(t, e)
	at := t0
	step := func(recs ...payload.Record) {
		at = at.Add(time.Second)
		e.Observe(recs)
	}
	step(bay("bay-01", "a", "01", false, at), bay("bay-02", "a", "02", true, at))
	step(bay("bay-01", "a", "01", false, at)) // heartbeat: no write
	step(bay("bay-01", "a", "01", true, at))
	step(bay("bay-01", "a", "01", true, at), bay("bay-02", "a", "02", true, at))
	step(bay("bay-02", "a", "02", false, at))
	step(bay("bay-01", "a", "01", false, at))
	step(bay("bay-01", "a", "01", false, at))
	got := w.wait(t, 5)
	want := []string{
		"bay-01.led=green", "bay-02.led=red",
		"bay-01.led=red",
		"bay-02.led=green",
		"bay-01.led=green",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("writes\n got %v\nwant %v", got, want)
	}
	// The hold rule runs on every record; only changes write.
	if s := ruleStats(t, e, "bay-led"); s.Fires != 9 || s.Evaluations != 9 || s.Series != 2 {
		t.Errorf("bay-led: %d fires, %d evaluations over %d series, want 9, 9 over 2", s.Fires, s.Evaluations, s.Series)
	}
	if v := w.writes[0].Value; v.Type() != payload.TypeString {
		t.Errorf("LED value is %s, want a string", v.Type())
	}
}

// TestOverstayOncePerStay: the overstay example fires once when a stay
// passes 2 h, driven by the tick alone, never again during that stay, and
// again for the next stay.
func TestOverstayOncePerStay(t *testing.T) {
	clk := newFakeClock()
	em := newFakeEmitter()
	e := mustEngine(t, example(t, "overstay.yaml"), Options{Clock: clk, Emitter: em})
	run(t, e)
	e.Observe([]payload.Record{bay("bay-07", "a", "07", true, clk.Now()), bay("bay-08", "a", "08", false, clk.Now())})
	tick := func(d time.Duration) {
		clk.Advance(d)
		e.Tick()
	}
	tick(time.Hour)
	tick(59 * time.Minute)
	if f := ruleStats(t, e, "overstay").Fires; f != 0 {
		t.Fatalf("fired %d times before 2 h", f)
	}
	tick(2 * time.Minute) // 2h01m
	tick(time.Minute)
	e.Observe([]payload.Record{bay("bay-07", "a", "07", true, clk.Now())}) // heartbeat during the stay
	tick(30 * time.Minute)
	if f := ruleStats(t, e, "overstay").Fires; f != 1 {
		t.Fatalf("fired %d times during one stay, want 1", f)
	}
	// The car leaves, another arrives and stays 2h30m; bay 8 gets a car too.
	e.Observe([]payload.Record{bay("bay-07", "a", "07", false, clk.Now())})
	tick(10 * time.Minute)
	e.Observe([]payload.Record{bay("bay-07", "a", "07", true, clk.Now()), bay("bay-08", "a", "08", true, clk.Now())})
	for range 15 {
		tick(10 * time.Minute)
	}
	alerts := em.wait(t, "alert", 3)
	want := []string{
		"bay 07 in zone a occupied for 2h1m",
		"bay 07 in zone a occupied for 2h10m",
		"bay 08 in zone a occupied for 2h10m",
	}
	got := messages(alerts)
	if got[1] > got[2] {
		got[1], got[2] = got[2], got[1]
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("alerts\n got %q\nwant %q", got, want)
	}
	a := alerts[0]
	if a.Tags["rule"] != "overstay" || a.Tags["severity"] != "warning" || a.Tags["device"] != "bay-07" {
		t.Errorf("alert tags %v", a.Tags)
	}
	if err := payload.CheckSchema(&a); err != nil {
		t.Errorf("alert breaks the InfluxDB contract: %v", err)
	}
	if !a.Time.Equal(t0.Add(2*time.Hour + time.Minute)) {
		t.Errorf("alert time %v, want the tick that found it", a.Time)
	}
	if k := em.kinds[0]; k != payload.Event {
		t.Errorf("alert went out as %s, want events (never dropped)", k)
	}
	if f := ruleStats(t, e, "overstay").Fires; f != 3 {
		t.Errorf("fires %d, want 3", f)
	}
}

func access(door, reader, result string, at time.Time) payload.Record {
	return payload.Record{Measurement: "access", Time: at,
		Tags:   map[string]string{"door": door, "reader": reader, "result": result},
		Fields: map[string]payload.Value{"credential": payload.String("c-1"), "reason": payload.String("unknown card")}}
}

// TestCountWithinSlidingWindow: denied cards are counted per door over a
// sliding 60 s window; granted cards, other doors and old denials do not
// count.
func TestCountWithinSlidingWindow(t *testing.T) {
	clk := newFakeClock()
	em := newFakeEmitter()
	w := newFakeWriter()
	e := mustEngine(t, example(t, "denied-cards.yaml"), Options{Clock: clk, Emitter: em, Writer: w})
	run(t, e)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	// Door d1: two readers, denials at 0 s, 10 s (reader r2), a grant, and 20 s.
	e.ObserveEvents([]payload.Record{access("d1", "r1", "denied", at(0))})
	e.ObserveEvents([]payload.Record{access("d1", "r2", "denied", at(10)), access("d1", "r1", "granted", at(12))})
	e.Observe([]payload.Record{access("d1", "r1", "denied", at(15))}) // telemetry, not an event: ignored
	if f := ruleStats(t, e, "denied-cards").Fires; f != 0 {
		t.Fatalf("fired after 2 denials")
	}
	e.ObserveEvents([]payload.Record{access("d1", "r1", "denied", at(20))})
	if f := ruleStats(t, e, "denied-cards").Fires; f != 1 {
		t.Fatalf("fires after 3 denials within 60 s: %d, want 1", f)
	}
	// Door d2: denials at 0, 40, 70 s: the first has left the window at 70.
	e.ObserveEvents([]payload.Record{access("d2", "r1", "denied", at(0)), access("d2", "r1", "denied", at(40)), access("d2", "r1", "denied", at(70))})
	if f := ruleStats(t, e, "denied-cards").Fires; f != 1 {
		t.Fatalf("d2 fired with 2 denials in the window")
	}
	e.ObserveEvents([]payload.Record{access("d2", "r1", "denied", at(75))})
	if f := ruleStats(t, e, "denied-cards").Fires; f != 2 {
		t.Fatalf("d2 did not fire with 3 denials in the window")
	}
	got := messages(em.wait(t, "alert", 2))
	want := []string{"door d1: 3 denied cards within 60s", "door d2: 3 denied cards within 60s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
	if s := ruleStats(t, e, "denied-cards"); s.Series != 2 {
		t.Errorf("series %d, want 2 (key: [door])", s.Series)
	}
	// The pulse switched each door's buzzer on; the off-writes follow the fake clock.
	on := w.wait(t, 2)
	if on[0] != "d1-io.buzzer=true" || on[1] != "d2-io.buzzer=true" {
		t.Errorf("pulse writes %v", on)
	}
}

// TestCooldown: a level rule fires on each matching record, but not again
// for one series within its cooldown; other series are not held back.
func TestCooldown(t *testing.T) {
	clk := newFakeClock()
	e := mustEngine(t, `rules:
  - name: too-close
    trigger: {measurement: parking_bay}
    when: distance_cm < 50
    fire: level
    cooldown: 10m
    actions: [{alert: {message: "{{ device }} {{ distance_cm }}"}}]
`, Options{Clock: clk})
	rec := func(dev string, cm float64, min int) payload.Record {
		r := bay(dev, "a", "1", true, t0.Add(time.Duration(min)*time.Minute))
		r.Fields["distance_cm"] = payload.Float(cm)
		return r
	}
	for _, r := range []payload.Record{
		rec("b1", 40, 0), rec("b1", 30, 5), rec("b2", 30, 6), rec("b1", 80, 7), rec("b1", 20, 9), rec("b1", 20, 10), rec("b1", 20, 21),
	} {
		e.Observe([]payload.Record{r})
	}
	s := ruleStats(t, e, "too-close")
	if s.Fires != 4 || s.Suppressed != 2 || s.Evaluations != 7 {
		t.Errorf("fires %d suppressed %d evaluations %d; want 4, 2, 7", s.Fires, s.Suppressed, s.Evaluations)
	}
	var got []string
	for len(e.recQ) > 0 {
		j := <-e.recQ
		got = append(got, j.recs[0].Fields["message"].Str())
	}
	want := []string{"b1 40", "b2 30", "b1 20", "b1 20"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
}

// TestEnableDisable: a disabled rule does not fire; turned on again while
// its condition holds, it fires once; unknown names are an error.
func TestEnableDisable(t *testing.T) {
	clk := newFakeClock()
	e := mustEngine(t, `rules:
  - name: bay-led-occupied
    trigger: {measurement: parking_bay}
    when: occupied
    actions:
      - write: {device: "{{ device }}", point: led, value: red}
`, Options{Clock: clk})
	if err := e.Enable("bay-led-occupied", false); err != nil {
		t.Fatal(err)
	}
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0)})
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0.Add(time.Second))})
	s := ruleStats(t, e, "bay-led-occupied")
	if s.Fires != 0 || s.Enabled || s.Evaluations != 0 {
		t.Fatalf("disabled rule: %+v", s)
	}
	if err := e.Enable("bay-led-occupied", true); err != nil {
		t.Fatal(err)
	}
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0.Add(2*time.Second))})
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0.Add(3*time.Second))})
	if f := ruleStats(t, e, "bay-led-occupied").Fires; f != 1 {
		t.Errorf("re-enabled rule fired %d times, want 1", f)
	}
	err := e.Enable("bay-led-ocupied", false)
	if !errors.Is(err, ErrUnknownRule) || err.Error() != `rules: enable "bay-led-ocupied": no such rule` {
		t.Errorf("unknown rule: %v", err)
	}
	// A rule disabled in the file starts off.
	e2 := mustEngine(t, `rules:
  - name: off
    enabled: false
    trigger: {measurement: parking_bay}
    actions: [{alert: {message: x}}]
`, Options{Clock: clk})
	e2.Observe([]payload.Record{bay("b1", "a", "1", true, t0)})
	if s := ruleStats(t, e2, "off"); s.Enabled || s.Fires != 0 {
		t.Errorf("enabled: false rule: %+v", s)
	}
}

// TestBlockedSinkDoesNotBlockObserve: while a device write hangs, Observe
// keeps returning, the queue holds what fits and every other action is
// dropped and counted.
func TestBlockedSinkDoesNotBlockObserve(t *testing.T) {
	clk := newFakeClock()
	w := newFakeWriter()
	w.gate = make(chan struct{})
	e := mustEngine(t, example(t, "bay-led.yaml"), Options{Clock: clk, Writer: w, QueueLen: 4})
	run(t, e)
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0)})
	<-w.entered // the worker is stuck in the first write
	const n = 100
	for i := 1; i < n; i++ {
		e.Observe([]payload.Record{bay("b1", "a", "1", i%2 == 0, t0.Add(time.Duration(i)*time.Second))})
	}
	s := e.Stats()
	if s.ActionDropped != n-1-4 || s.Queued != 4 {
		t.Errorf("dropped %d, queued %d; want %d and 4", s.ActionDropped, s.Queued, n-1-4)
	}
	if r := ruleStats(t, e, "bay-led"); r.Fires != n || r.ActionDropped != n-5 {
		t.Errorf("fires %d, dropped %d", r.Fires, r.ActionDropped)
	}
	close(w.gate)
	got := w.wait(t, 5)
	if got[0] != "b1.led=red" || len(got) != 5 {
		t.Errorf("writes after unblocking: %v", got)
	}
}

// TestVirtualValuesChain: the zone-full example counts free bays into a
// virtual value, which triggers the zone-full alert once when it reaches
// zero and again after the zone filled up anew.
func TestVirtualValuesChain(t *testing.T) {
	clk := newFakeClock()
	em := newFakeEmitter()
	e := mustEngine(t, example(t, "zone-full.yaml"), Options{Clock: clk, Emitter: em})
	run(t, e)
	var recs []payload.Record
	for i := 1; i <= 40; i++ {
		recs = append(recs, bay(fmt.Sprintf("bay-%02d", i), "a", fmt.Sprint(i), false, t0))
	}
	recs = append(recs, bay("bay-b1", "b", "1", true, t0)) // zone b: not counted
	e.Observe(recs)
	if v, ok := e.Virtual("zone-a-free"); !ok || !v.Equal(payload.Int(40)) {
		t.Fatalf("zone-a-free = %v, want 40", v)
	}
	for i := 1; i <= 40; i++ {
		e.Observe([]payload.Record{bay(fmt.Sprintf("bay-%02d", i), "a", fmt.Sprint(i), true, t0.Add(time.Duration(i)*time.Second))})
	}
	if v, _ := e.Virtual("zone-a-free"); !v.Equal(payload.Int(0)) {
		t.Fatalf("zone-a-free = %v, want 0", v)
	}
	e.Observe([]payload.Record{bay("bay-07", "a", "7", false, t0.Add(time.Minute))})
	e.Observe([]payload.Record{bay("bay-07", "a", "7", true, t0.Add(2*time.Minute))})
	e.Observe([]payload.Record{bay("bay-07", "a", "7", true, t0.Add(3*time.Minute))})
	alerts := em.wait(t, "alert", 2)
	if len(alerts) != 2 || alerts[0].Fields["message"].Str() != "zone a is full: all 40 bays are taken" {
		t.Fatalf("alerts %q", messages(alerts))
	}
	if _, has := alerts[0].Tags["device"]; has {
		t.Errorf("zone alert carries a device tag: %v", alerts[0].Tags)
	}
	// Every change of the virtual value went out once as measurement virtual.
	virt := em.wait(t, "virtual", 43)
	if len(virt) != 43 {
		t.Errorf("%d virtual records, want 43 (40, 39..0, 1, 0)", len(virt))
	}
	last := virt[len(virt)-1]
	if last.Tags["name"] != "zone-a-free" || !last.Fields["value"].Equal(payload.Int(0)) {
		t.Errorf("last virtual record %+v", last)
	}
	if s := ruleStats(t, e, "zone-a-full"); s.Fires != 2 {
		t.Errorf("zone-full fired %d times, want 2", s.Fires)
	}
}

// TestNoisySensor: the noisy-sensor example counts only changes of
// occupied (not heartbeats) and alerts once within its cooldown.
func TestNoisySensor(t *testing.T) {
	clk := newFakeClock()
	e := mustEngine(t, example(t, "noisy-sensor.yaml"), Options{Clock: clk})
	at := t0
	obs := func(occ bool) {
		at = at.Add(5 * time.Second)
		e.Observe([]payload.Record{bay("bay-03", "a", "03", occ, at)})
	}
	obs(false)
	for i := range 6 {
		obs(i%2 == 0) // 6 changes in 30 s
		obs(i%2 == 0) // a heartbeat after each
	}
	if f := ruleStats(t, e, "noisy-bay-sensor").Fires; f != 0 {
		t.Fatalf("fired after 6 changes")
	}
	obs(true) // the 7th change within a minute
	obs(false)
	obs(true)
	s := ruleStats(t, e, "noisy-bay-sensor")
	if s.Fires != 1 || s.Evaluations != 9 {
		t.Errorf("fires %d evaluations %d, want 1 and 9", s.Fires, s.Evaluations)
	}
	j := <-e.recQ
	if m := j.recs[0].Fields["message"].Str(); m != "bay 03 (bay-03): occupancy changed 7 times in a minute; check the sensor" {
		t.Errorf("message %q", m)
	}
}

// TestSchedule: an every: rule runs once per period on the tick, and
// virtual() reads what other rules set.
func TestScheduleAndCommand(t *testing.T) {
	clk := newFakeClock()
	cmd := &fakeCommander{ch: make(chan struct{}, 16)}
	e := mustEngine(t, `rules:
  - name: free-count
    trigger: {measurement: parking_bay}
    actions: [{set: {name: free, value: '{{ occupied ? 0 : 1 }}'}}]
  - name: report
    trigger: {every: 1m}
    when: virtual("free") == 1
    fire: level
    actions:
      - command: {name: display-free, args: {free: '{{ virtual("free") }}', at: '{{ now() }}'}}
`, Options{Clock: clk, Commander: cmd})
	run(t, e)
	e.Tick() // first tick arms the schedule
	e.Observe([]payload.Record{bay("b1", "a", "1", false, t0)})
	for range 5 {
		clk.Advance(30 * time.Second)
		e.Tick()
	}
	e.Observe([]payload.Record{bay("b1", "a", "1", true, clk.Now())})
	clk.Advance(time.Minute)
	e.Tick()
	s := ruleStats(t, e, "report")
	if s.Evaluations != 3 || s.Fires != 2 {
		t.Errorf("schedule: %d evaluations %d fires, want 3 and 2", s.Evaluations, s.Fires)
	}
	for range 2 {
		<-cmd.ch
	}
	cmd.mu.Lock()
	defer cmd.mu.Unlock()
	want := []string{"display-free at=2026-11-25T08:01:00Z free=1", "display-free at=2026-11-25T08:02:00Z free=1"}
	if !reflect.DeepEqual(cmd.cmds, want) {
		t.Errorf("commands %q, want %q", cmd.cmds, want)
	}
}

// TestPulse: a pulse switches the output on, and off after its duration on
// the engine's clock; at shutdown a pulse in progress is switched off.
func TestPulse(t *testing.T) {
	clk := newFakeClock()
	w := newFakeWriter()
	e := mustEngine(t, `rules:
  - name: open-door
    trigger: {event: access, tags: {result: granted}}
    actions: [{pulse: {device: "{{ tags.door }}-io", point: strike, for: 3s}}]
`, Options{Clock: clk, Writer: w})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	e.ObserveEvents([]payload.Record{access("d1", "r1", "granted", t0)})
	if got := w.wait(t, 1); got[0] != "d1-io.strike=true" {
		t.Fatalf("writes %v", got)
	}
	waitFor(t, func() bool { return clk.Waiters() >= 2 }) // the tick and the pulse
	clk.Advance(2 * time.Second)
	clk.Advance(time.Second)
	if got := w.wait(t, 2); got[1] != "d1-io.strike=false" {
		t.Fatalf("writes %v", got)
	}
	e.ObserveEvents([]payload.Record{access("d2", "r1", "granted", t0)})
	w.wait(t, 3)
	cancel()
	<-done
	if got := w.wait(t, 4); got[3] != "d2-io.strike=false" {
		t.Errorf("shutdown left the strike on: %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "the condition", cond)
}

// TestPrevAndFieldsMap: prev gives the series' previous value, fields and
// tags reach everything, and records lacking a named field are skipped.
func TestPrevAndFieldsMap(t *testing.T) {
	clk := newFakeClock()
	e := mustEngine(t, `rules:
  - name: jump
    trigger: {device: "bay-*"}
    fields: {distance_cm: float}
    when: prev("distance_cm") != nil && distance_cm - prev("distance_cm") > 50 && fields.sensor_fault == false
    fire: level
    actions: [{emit: {measurement: rule_note, kind: telemetry, tags: {zone: "{{ tags.zone }}"}, fields: {delta: "{{ distance_cm - prev(\"distance_cm\") }}", note: jump}}}]
`, Options{Clock: clk})
	rec := func(dev string, cm float64) payload.Record {
		r := bay(dev, "a", "1", true, clk.Advance(time.Second))
		r.Fields["distance_cm"] = payload.Float(cm)
		r.Fields["sensor_fault"] = payload.Bool(false)
		return r
	}
	e.Observe([]payload.Record{rec("bay-1", 100), rec("bay-2", 10), rec("bay-1", 120), rec("bay-1", 200), rec("gate-1", 500), rec("bay-2", 70)})
	noField := bay("bay-1", "a", "1", true, clk.Now())
	delete(noField.Fields, "distance_cm")
	e.Observe([]payload.Record{noField})
	s := ruleStats(t, e, "jump")
	if s.Fires != 2 || s.Skipped != 1 || s.Errors != 0 {
		t.Fatalf("fires %d skipped %d errors %d (%s); want 2, 1, 0", s.Fires, s.Skipped, s.Errors, s.LastError)
	}
	var got []string
	for len(e.recQ) > 0 {
		j := <-e.recQ
		r := j.recs[0]
		got = append(got, fmt.Sprintf("%s %s %s %s %v", r.Measurement, r.Tags["zone"], r.Fields["delta"], r.Fields["note"], j.event))
	}
	want := []string{"rule_note a 80 jump false", "rule_note a 60 jump false"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("emitted %q, want %q", got, want)
	}
}

// TestRuntimeErrorsCounted: an expression that fails at run time is
// counted and reported in Stats, and the engine goes on.
func TestRuntimeErrorsCounted(t *testing.T) {
	e := mustEngine(t, `rules:
  - name: bad
    trigger: {measurement: parking_bay}
    when: prev("distance_cm") > 3
    actions: [{alert: {message: x}}]
`, Options{Clock: newFakeClock()})
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0)})
	s := ruleStats(t, e, "bad")
	if s.Errors != 1 || !strings.Contains(s.LastError, `when: prev("distance_cm") > 3: invalid operation: <nil> > int`) {
		t.Errorf("errors %d, last %q", s.Errors, s.LastError)
	}
	e.Observe([]payload.Record{bay("b1", "a", "1", true, t0.Add(time.Second))})
	if s := ruleStats(t, e, "bad"); s.Errors != 1 || s.Evaluations != 2 {
		t.Errorf("errors %d evaluations %d", s.Errors, s.Evaluations)
	}
}

// TestExamplesLoad: every example compiles, alone and carried through the
// gateway config loader.
func TestExamplesLoad(t *testing.T) {
	names := []string{"bay-led.yaml", "zone-full.yaml", "overstay.yaml", "noisy-sensor.yaml", "denied-cards.yaml"}
	var all strings.Builder
	all.WriteString(`site: lot-a
gateway: gw-01
uplink: {brokers: ["tcp://broker.example:1883"]}
outbox: {path: /var/lib/luling/outbox}
rules:
`)
	total := 0
	for _, n := range names {
		src := example(t, n)
		defs := mustParse(t, src)
		if _, err := New(defs, Options{}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		total += len(defs)
		_, body, _ := strings.Cut(src, "rules:\n")
		all.WriteString(body)
	}
	cfg, err := config.Parse("gw.yaml", []byte(all.String()), config.SkipFileChecks())
	if err != nil {
		t.Fatal(err)
	}
	defs, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(defs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Names()) != total || e.Names()[0] != "bay-led" {
		t.Errorf("rules %v", e.Names())
	}
	if defs[2].File != "gw.yaml" || defs[2].Line != cfg.Rules[2].Line {
		t.Errorf("rule 2 at %s:%d, config says line %d", defs[2].File, defs[2].Line, cfg.Rules[2].Line)
	}
}

// TestConfigRuleErrorsNameTheConfigFile: a mistake in a rule of the gateway
// config is reported at its line in that file.
func TestConfigRuleErrorsNameTheConfigFile(t *testing.T) {
	src := `site: lot-a
gateway: gw-01
uplink: {brokers: ["tcp://broker.example:1883"]}
outbox: {path: /var/lib/luling/outbox}
rules:
  - name: overstay
    trigger: {measurement: parking_bay}
    when: occupied && held_for("occupied") > "2h"
    actions: [{alert: {message: long stay}}]
`
	cfg, err := config.Parse("site.yaml", []byte(src), config.SkipFileChecks())
	if err != nil {
		t.Fatal(err)
	}
	defs, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(defs, Options{})
	want := `site.yaml:8:11: rule "overstay" (line 6): when: invalid operation: > (mismatched types time.Duration and string) (expression 1:34)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := range 1000 {
		h.add(time.Duration(1000+i) * time.Nanosecond) // 1.0..2.0 µs
	}
	for range 10 {
		h.add(time.Millisecond)
	}
	p50, p99 := h.quantile(0.5), h.quantile(0.99)
	if p50 < 1000 || p50 > 2100 {
		t.Errorf("p50 %v", p50)
	}
	if p99 < 1000 || p99 > 2100 {
		t.Errorf("p99 %v, want about 2 µs (10 of 1010 samples are slow)", p99)
	}
	if p := h.quantile(0.999); p < time.Millisecond || p > 1600*time.Microsecond {
		t.Errorf("p99.9 %v, want about 1 ms", p)
	}
	for _, d := range []time.Duration{1, 2, 3, 5, 1000, 1 << 40} {
		if u := upper(bucketOf(d)); u < d {
			t.Errorf("bucket of %v has upper bound %v", d, u)
		}
	}
}

// TestHeld: held measures how long a field has held one given value.
func TestHeld(t *testing.T) {
	clk := newFakeClock()
	e := mustEngine(t, `rules:
  - name: door-held
    trigger: {event: door}
    when: held("state", "open") > duration("30s") && held("open", true) >= duration("30s")
    actions: [{alert: {message: 'door {{ tags.door }} open for {{ held("state", "open") }}', device: '{{ tags.door }}'}}]
`, Options{Clock: clk})
	door := func(state string) {
		e.ObserveEvents([]payload.Record{{Measurement: "door", Time: clk.Now(), Tags: map[string]string{"door": "d1"},
			Fields: map[string]payload.Value{"state": payload.String(state), "open": payload.Bool(state == "open")}}})
	}
	door("open")
	clk.Advance(20 * time.Second)
	e.Tick()
	door("closed")
	clk.Advance(20 * time.Second)
	e.Tick() // closed for 20 s: held("state", "open") is 0
	door("open")
	clk.Advance(31 * time.Second)
	e.Tick()
	s := ruleStats(t, e, "door-held")
	if s.Fires != 1 {
		t.Fatalf("fires %d, want 1", s.Fires)
	}
	j := <-e.recQ
	if m, d := j.recs[0].Fields["message"].Str(), j.recs[0].Tags["device"]; m != "door d1 open for 31s" || d != "d1" {
		t.Errorf("alert %q device %q", m, d)
	}
}

type pollOnly struct{}

func (pollOnly) Poll(context.Context) ([]payload.Record, error) { return nil, nil }

type led struct {
	pollOnly
	got []string
}

func (l *led) Write(_ context.Context, point string, v payload.Value) error {
	if point != "led" {
		return fmt.Errorf("no point %q", point)
	}
	l.got = append(l.got, v.Str())
	return nil
}

// TestDevicesRoutesWrites: Devices hands writes to the device's driver and
// names the device when it cannot.
func TestDevicesRoutesWrites(t *testing.T) {
	l := &led{}
	m := Devices{"bay-01": l, "meter": pollOnly{}}
	ctx := context.Background()
	if err := m.Write(ctx, "bay-01", "led", payload.String("red")); err != nil || len(l.got) != 1 || l.got[0] != "red" {
		t.Fatalf("write: %v %v", err, l.got)
	}
	for dev, want := range map[string]string{
		"bay-02": `rules: write bay-02.led: device "bay-02" is not configured`,
		"meter":  `rules: write meter.led: device "meter" has no writable points`,
	} {
		if err := m.Write(ctx, dev, "led", payload.String("red")); err == nil || err.Error() != want {
			t.Errorf("%s: %v", dev, err)
		}
	}
	if err := m.Write(ctx, "bay-01", "lamp", payload.String("red")); err == nil || err.Error() != `no point "lamp"` {
		t.Errorf("driver error not passed on: %v", err)
	}
}

// TestMaxKeys: a rule tracks a bounded number of series; records of further
// series are counted as errors, not evaluated.
func TestMaxKeys(t *testing.T) {
	e := mustEngine(t, example(t, "overstay.yaml"), Options{Clock: newFakeClock(), MaxKeys: 2})
	for i := range 5 {
		e.Observe([]payload.Record{bay(fmt.Sprintf("bay-%d", i), "a", fmt.Sprint(i), true, t0)})
	}
	s := ruleStats(t, e, "overstay")
	if s.Series != 2 || s.Errors != 3 || s.Evaluations != 2 || s.LastError != "more than 2 series; records of further series are not evaluated" {
		t.Errorf("%+v", s)
	}
}

// Action queues cost memory only when there are rules to fill them: a
// gateway without rules keeps no queue of DefaultQueueLen jobs, and Run
// still starts and stops.
func TestQueuesOnlyWithRules(t *testing.T) {
	none, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cap(none.recQ) != 0 || cap(none.devQ) != 0 {
		t.Errorf("without rules, queues of %d and %d jobs, want none", cap(none.recQ), cap(none.devQ))
	}
	run(t, none)
	some := mustEngine(t, example(t, "bay-led.yaml"), Options{Clock: newFakeClock(), Writer: newFakeWriter()})
	if cap(some.recQ) != DefaultQueueLen || cap(some.devQ) != DefaultQueueLen {
		t.Errorf("with rules, queues of %d and %d jobs, want %d", cap(some.recQ), cap(some.devQ), DefaultQueueLen)
	}
}
