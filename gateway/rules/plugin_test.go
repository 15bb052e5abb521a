package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// scriptedRule is a PluginRule whose decisions the test scripts: it
// records its calls and answers with what decide returns. When gate is set,
// each call waits for it.
type scriptedRule struct {
	mu      sync.Mutex
	calls   []PluginInput
	decide  func(in PluginInput) ([]PluginAction, error)
	gate    chan struct{}
	entered chan struct{} // when set, told before each wait at the gate
	closed  bool
	events  []payload.Record
}

func (s *scriptedRule) Evaluate(ctx context.Context, in PluginInput) ([]PluginAction, error) {
	if s.entered != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	s.calls = append(s.calls, in)
	s.mu.Unlock()
	if s.decide == nil {
		return nil, nil
	}
	return s.decide(in)
}

func (s *scriptedRule) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *scriptedRule) TakeEvents() []payload.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	return out
}

// seen is the devices and occupancy of every record the plugin got.
func (s *scriptedRule) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		for _, r := range c.Records {
			out = append(out, r.Tags["device"]+"="+r.Fields["occupied"].Str())
		}
	}
	return out
}

func pluginEngine(t *testing.T, src string, sr *scriptedRule, opts Options) *Engine {
	t.Helper()
	var got []*PluginDef
	opts.Plugins = func(name string, def *PluginDef) (PluginRule, error) {
		got = append(got, def)
		return sr, nil
	}
	e := mustEngine(t, src, opts)
	if len(got) != 1 {
		t.Fatalf("factory called %d times", len(got))
	}
	return e
}

const guidanceRule = `rules:
  - name: guidance
    trigger: {measurement: parking_bay, tags: {zone: north}}
    plugin:
      path: /opt/luling/plugins/zone-guidance
      sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
      call_timeout: 2s
      config:
        zones:
          north: {sign: sign-north, capacity: 40}
        ids: [1, 2]
`

// TestPluginRuleGetsSelectedRecords: the plugin sees the records its
// trigger selects, in order; its actions become device writes, alerts and
// emitted records through the engine's queues.
func TestPluginRuleGetsSelectedRecords(t *testing.T) {
	w, em := newFakeWriter(), newFakeEmitter()
	sr := &scriptedRule{decide: func(in PluginInput) ([]PluginAction, error) {
		n := int64(0)
		for _, r := range in.Records {
			if r.Fields["occupied"].Bool() {
				n++
			}
		}
		return []PluginAction{
			{Kind: ActWrite, Device: "sign-north", Point: "free", Value: payload.Int(40 - n)},
			{Kind: ActAlert, Severity: "warning", Message: "busy", Device: "sign-north"},
			{Kind: ActEmit, Record: payload.Record{Measurement: "zone_guidance", Tags: map[string]string{"zone": "north"},
				Fields: map[string]payload.Value{"free": payload.Int(40 - n)}}},
		}, nil
	}}
	var defs []*PluginDef
	e := mustEngine(t, guidanceRule, Options{Writer: w, Emitter: em, Clock: newFakeClock(),
		Plugins: func(name string, d *PluginDef) (PluginRule, error) {
			if name != "guidance" {
				t.Errorf("factory for %q", name)
			}
			defs = append(defs, d)
			return sr, nil
		}})
	d := defs[0]
	if d.Path != "/opt/luling/plugins/zone-guidance" || d.CallTimeout != 2*time.Second || d.Pos.Line != 5 {
		t.Errorf("plugin def %+v", d)
	}
	zones, _ := d.Config["zones"].(map[string]any)
	north, _ := zones["north"].(map[string]any)
	if north["sign"] != "sign-north" || north["capacity"] != 40 {
		t.Errorf("config %#v", d.Config)
	}
	run(t, e)
	e.Observe([]payload.Record{bay("b1", "north", "01", true, t0), bay("b2", "south", "01", true, t0), bay("b3", "north", "03", false, t0)})
	if got := w.wait(t, 1); got[0] != "sign-north.free=39" {
		t.Errorf("writes %v", got)
	}
	alerts := em.wait(t, "alert", 1)
	if a := alerts[0]; a.Tags["rule"] != "guidance" || a.Tags["severity"] != "warning" || a.Tags["device"] != "sign-north" || a.Fields["message"].Str() != "busy" {
		t.Errorf("alert %+v", a)
	}
	z := em.wait(t, "zone_guidance", 1)[0]
	if z.Tags["rule"] != "guidance" || z.Time.IsZero() || z.Fields["free"].Int() != 39 {
		t.Errorf("emitted %+v", z)
	}
	if got := strings.Join(sr.seen(), ","); got != "b1=true,b3=false" {
		t.Errorf("plugin saw %s: want the north bays only, in order", got)
	}
	st, _ := e.Stats().Rule("guidance")
	if st.Evaluations < 1 || st.Fires != st.Evaluations || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestPluginRuleNeverBlocksObserve: while the plugin is slow, Observe
// returns at once; records gather and arrive in one call; beyond the bound
// they are dropped and counted; a disabled rule passes nothing.
func TestPluginRuleNeverBlocksObserve(t *testing.T) {
	sr := &scriptedRule{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	e := pluginEngine(t, guidanceRule, sr, Options{Clock: newFakeClock()})
	run(t, e)
	// The worker takes the first record and waits at the gate; the rest
	// gather behind it.
	e.Observe([]payload.Record{bay("b0", "north", "00", true, t0)})
	<-sr.entered
	const total = 1 + maxPluginPending + 10
	start := time.Now()
	for i := range total - 1 {
		e.Observe([]payload.Record{bay("b1", "north", "01", i%2 == 0, t0)})
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Observe took %v while the plugin was stuck", el)
	}
	close(sr.gate)
	dropped := func() uint64 { st, _ := e.Stats().Rule("guidance"); return st.Dropped }
	waitFor(t, func() bool { return uint64(len(sr.seen()))+dropped() == total })
	if d := dropped(); d != 10 {
		t.Errorf("dropped %d, want the 10 records over the bound", d)
	}
	sr.mu.Lock()
	calls := len(sr.calls)
	sr.mu.Unlock()
	if calls > 3 {
		t.Errorf("%d calls for records that gathered while the plugin was busy, want them batched", calls)
	}

	if err := e.Enable("guidance", false); err != nil {
		t.Fatal(err)
	}
	e.Observe([]payload.Record{bay("b9", "north", "09", true, t0)})
	// Records reach the plugin in order: once a record sent after
	// enabling the rule again has arrived, b9 would have too.
	if err := e.Enable("guidance", true); err != nil {
		t.Fatal(err)
	}
	e.Observe([]payload.Record{bay("b8", "north", "08", true, t0)})
	waitFor(t, func() bool { return slices.Contains(sr.seen(), "b8=true") })
	if slices.Contains(sr.seen(), "b9=true") {
		t.Error("a disabled plugin rule got a record")
	}
}

// TestPluginRuleSchedule: a plugin rule with every: is called on its
// schedule without records, and reports its own faults as events.
func TestPluginRuleSchedule(t *testing.T) {
	clk := newFakeClock()
	em := newFakeEmitter()
	sr := &scriptedRule{events: []payload.Record{{Measurement: "fault", Tags: map[string]string{"rule": "report", "code": "plugin_crashed"},
		Fields: map[string]payload.Value{"state": payload.String("cleared")}, Time: t0}}}
	sr.decide = func(in PluginInput) ([]PluginAction, error) {
		if !in.Tick || len(in.Records) != 0 {
			return nil, errors.New("want a tick")
		}
		return nil, nil
	}
	e := pluginEngine(t, `rules:
  - name: report
    trigger: {every: 1m}
    plugin: {path: /x, sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
`, sr, Options{Clock: clk, Emitter: em})
	run(t, e)
	e.Tick() // sets the schedule
	calls := func() int { sr.mu.Lock(); defer sr.mu.Unlock(); return len(sr.calls) }
	for range 3 {
		n := calls()
		clk.Advance(time.Minute)
		e.Tick()
		waitFor(t, func() bool { return calls() > n })
	}
	if f := em.wait(t, "fault", 1)[0]; f.Tags["code"] != "plugin_crashed" {
		t.Errorf("fault %+v", f)
	}
	if st, _ := e.Stats().Rule("report"); st.Errors != 0 || st.Evaluations < 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestPluginRuleErrors: a plugin section is checked like the rest of a
// rule, with positions.
func TestPluginRuleErrors(t *testing.T) {
	factory := func(string, *PluginDef) (PluginRule, error) { return &scriptedRule{}, nil }
	for _, c := range []struct{ src, want string }{
		{`rules:
  - name: p
    trigger: {measurement: parking_bay}
    when: occupied
    plugin: {path: /x, sha256: abc}
`, `4:11: rule "p" (line 2): when: a plugin rule's plugin decides what to do: remove when`},
		{`rules:
  - name: p
    trigger: {measurement: parking_bay}
    plugin: {path: /x}
`, `plugin.sha256: required key is missing`},
		{`rules:
  - name: p
    trigger: {measurement: parking_bay}
    plugin: {path: /x, sha256: abc, timeout: 2s}
`, `plugin.timeout: unknown key`},
		{`rules:
  - name: p
    trigger: {measurement: parking_bay}
    plugin: {path: /x, sha256: abc, config: [1, 2]}
`, `plugin.config: got a list, want a mapping`},
		{`rules:
  - name: p
    trigger: {virtual: x}
    plugin: {path: /x, sha256: abc}
`, `trigger.virtual: a plugin rule cannot follow a virtual value`},
	} {
		defs, err := ParseFile("r.yaml", []byte(c.src))
		if err == nil {
			_, err = New(defs, Options{Plugins: factory})
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v\nwant %q", err, c.want)
		}
	}
	// The factory's refusal is reported at the plugin section.
	defs := mustParse(t, guidanceRule)
	_, err := New(defs, Options{Plugins: func(string, *PluginDef) (PluginRule, error) {
		return nil, errors.New(`sha256 "abc" is not 64 hex digits`)
	}})
	if err == nil || !strings.Contains(err.Error(), `rules.yaml:5:7: rule "guidance" (line 2): plugin: sha256 "abc" is not 64 hex digits`) {
		t.Errorf("factory error: %v", err)
	}
	if _, err := New(defs, Options{}); err == nil || !strings.Contains(err.Error(), "built without the plugin host") {
		t.Errorf("without a factory: %v", err)
	}
}

// TestPluginRuleRetriesWhenDown: when the plugin is down, the engine calls
// again after a wait even without new records, so that the restarted
// plugin gets its state back; an error of the plugin's own is not retried.
func TestPluginRuleRetriesWhenDown(t *testing.T) {
	clk := newFakeClock()
	var fails int
	sr := &scriptedRule{}
	sr.decide = func(in PluginInput) ([]PluginAction, error) {
		if len(in.Records) > 0 && in.Records[0].Tags["device"] == "own-error" {
			return nil, errors.New("the plugin's own error")
		}
		if fails < 2 {
			fails++
			return nil, fmt.Errorf("crashed: %w", ErrPluginDown)
		}
		return nil, nil
	}
	// The engine's tick never comes due here, so the clock's waiters are
	// the tick and, while the plugin is down, the retry's timer.
	e := pluginEngine(t, guidanceRule, sr, Options{Clock: clk, Tick: time.Hour})
	run(t, e)
	calls := func() int { sr.mu.Lock(); defer sr.mu.Unlock(); return len(sr.calls) }
	evals := func() uint64 { st, _ := e.Stats().Rule("guidance"); return st.Evaluations }
	e.Observe([]payload.Record{bay("b1", "north", "01", true, t0)})
	waitFor(t, func() bool { return calls() == 1 })
	clk.BlockUntil(2)
	clk.Advance(time.Second) // first retry after 1 s
	waitFor(t, func() bool { return calls() == 2 })
	clk.BlockUntil(2)
	clk.Advance(time.Second) // the second waits 2 s
	if n := clk.Waiters(); n != 2 {
		t.Fatalf("the retry fired 1 s into a 2 s wait (%d waiters)", n)
	}
	clk.Advance(time.Second)
	waitFor(t, func() bool { return calls() == 3 })
	// The retry is armed before the evaluation is counted.
	waitFor(t, func() bool { return evals() == 3 })
	if n := clk.Waiters(); n != 1 {
		t.Errorf("a retry is armed after the plugin answered again (%d waiters)", n)
	}
	e.Observe([]payload.Record{bay("own-error", "north", "02", true, t0)})
	waitFor(t, func() bool { return evals() == 4 })
	if n := clk.Waiters(); n != 1 {
		t.Errorf("the plugin's own error is retried (%d waiters)", n)
	}
	if st, _ := e.Stats().Rule("guidance"); st.Errors != 3 {
		t.Errorf("errors %d, want 3", st.Errors)
	}
}
