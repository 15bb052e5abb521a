package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/types"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Writer sets a device output (an LED colour, a relay). The gateway routes
// it to the device's driver (drivers.Writer).
type Writer interface {
	Write(ctx context.Context, device, point string, v payload.Value) error
}

// Emitter takes records the rules produce (alerts, events, virtual values)
// into the gateway's outbox. The gateway's own Emit has this signature.
type Emitter interface {
	Emit(ctx context.Context, kind payload.Kind, recs []payload.Record)
}

// Commander runs a named gateway command (open-barrier, reload, ...).
type Commander interface {
	Command(ctx context.Context, name string, args map[string]string) error
}

// ErrUnknownRule is returned by Enable for a name no rule has.
var ErrUnknownRule = errors.New("no such rule")

// Defaults of Options.
const (
	DefaultQueueLen = 256
	DefaultTick     = time.Second
	DefaultMaxKeys  = 4096
	maxHits         = 4096 // trigger times kept per series for count_within
	maxChain        = 8    // rounds of virtual-value changes triggering rules in one Observe
)

// Options are what the gateway hands the engine.
type Options struct {
	Clock     clock.Clock // the real clock when nil; tests hand in a clock.Fake
	Logger    *slog.Logger
	Writer    Writer    // device writes and pulses; nil refuses them (counted as action errors)
	Emitter   Emitter   // alerts, emitted records, virtual values; nil drops them
	Commander Commander // commands; nil refuses them
	// Fields adds field types, per measurement, to those of the InfluxDB
	// contract (payload.Schema): conditions name these fields bare.
	Fields map[string]map[string]payload.ValueType
	// QueueLen bounds each action queue (records, and device actions).
	QueueLen int
	// Tick is how often Run re-evaluates time-dependent conditions and
	// checks schedules.
	Tick time.Duration
	// MaxKeys bounds the series one rule tracks; records of further series
	// are not evaluated and count as errors.
	MaxKeys int
	// Plugins makes the plugin of a rule with a plugin: section; without
	// it such rules are refused.
	Plugins PluginFactory
}

// Engine evaluates rules on records and carries out their actions.
// Observe, ObserveEvents, Tick, Enable, Stats and Virtual may be called from
// any goroutine; Run runs the action workers and the tick.
type Engine struct {
	opts  Options
	clock clock.Clock
	log   *slog.Logger

	mu        sync.Mutex // guards rule state and virtual values
	rules     []*rule
	byName    map[string]*rule
	byMeas    map[string]*index // measurement triggers
	byDevice  *index            // device-glob triggers without measurement
	byEvent   map[string]*index
	cand      []*rule // candidates of the record being observed
	byVirtual map[string][]*rule
	timed     []*rule // schedules and time-dependent conditions
	virtual   map[string]payload.Value
	pending   []payload.Record   // virtual changes waiting to be observed
	held      map[string]heldOut // hold actions' last values, by device and point

	recQ, devQ chan job
	dropped    atomic.Uint64
	done       atomic.Uint64
	failed     atomic.Uint64
	pulses     sync.WaitGroup
}

// heldOut is the value a hold action keeps on a device's output.
type heldOut struct {
	r             *rule
	device, point string
	value         payload.Value
}

// hold records a hold action's value and reports whether to write it: when
// it differs from the value last held on that output. Call with e.mu held.
func (e *Engine) hold(j job) bool {
	k := j.device + "\x00" + j.point
	if h, ok := e.held[k]; ok && h.value == j.value {
		return false
	}
	if e.held == nil {
		e.held = make(map[string]heldOut)
	}
	if len(e.held) < e.opts.MaxKeys {
		e.held[k] = heldOut{r: j.r, device: j.device, point: j.point, value: j.value}
	}
	return true
}

// reassert writes again every value held on a device's outputs: the
// device answers again after failing, and may have reset them. Call with
// e.mu held.
func (e *Engine) reassert(device string) {
	for _, h := range e.held {
		if h.device == device && h.r.enabled {
			e.enqueue(job{r: h.r, kind: ActHold, device: h.device, point: h.point, value: h.value})
		}
	}
}

// unhold forgets a held value whose write failed, so that the next
// evaluation writes it again.
func (e *Engine) unhold(j job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := j.device + "\x00" + j.point
	if h, ok := e.held[k]; ok && h.value == j.value {
		delete(e.held, k)
	}
}

// job is one prepared action.
type job struct {
	r      *rule
	kind   string
	recs   []payload.Record
	event  bool
	device string
	point  string
	value  payload.Value
	off    payload.Value
	dur    time.Duration
	name   string
	args   map[string]string
}

// New compiles defs. Every mistake is reported at once, as an *Errors.
func New(defs []Def, opts Options) (*Engine, error) {
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	e := &Engine{opts: opts, clock: opts.Clock, log: opts.Logger,
		byName: map[string]*rule{}, byMeas: map[string]*index{}, byEvent: map[string]*index{}, byDevice: &index{},
		byVirtual: map[string][]*rule{}, virtual: map[string]payload.Value{}}
	var errs []Error
	for i := range defs {
		d := &defs[i]
		if d.Name == "" {
			errs = append(errs, Error{File: d.File, Line: max(d.Line, 1), Msg: "rule has no name"})
			continue
		}
		if _, dup := e.byName[d.Name]; dup {
			errs = append(errs, Error{File: d.File, Line: max(d.Line, 1), Rule: d.Name, RuleLine: d.Line, Msg: "rule name is used twice"})
			continue
		}
		r := e.compileRule(d, &errs)
		if r == nil {
			continue
		}
		r.order = len(e.rules)
		e.rules = append(e.rules, r)
		e.byName[d.Name] = r
		t := d.Trigger
		switch {
		case t.Measurement != "":
			indexOf(e.byMeas, t.Measurement).add(r)
		case t.Device != "":
			e.byDevice.add(r)
		case t.Event != "":
			indexOf(e.byEvent, t.Event).add(r)
		case t.Virtual != "":
			e.byVirtual[t.Virtual] = append(e.byVirtual[t.Virtual], r)
		}
		if t.Every > 0 || r.timeDep {
			e.timed = append(e.timed, r)
		}
	}
	if len(errs) > 0 {
		return nil, (&Errors{List: errs}).sorted()
	}
	// Only rules queue actions: a gateway without rules does not hold two
	// queues of QueueLen jobs (about 110 KiB) it never uses.
	qlen := opts.QueueLen
	if len(e.rules) == 0 {
		qlen = 0
	}
	e.recQ, e.devQ = make(chan job, qlen), make(chan job, qlen)
	return e, nil
}

// fieldTypes returns the field catalogue of a measurement.
func (e *Engine) fieldTypes(meas string) map[string]payload.ValueType {
	out := map[string]payload.ValueType{}
	if m, ok := payload.Schema[meas]; ok {
		for k, v := range m.Fields {
			out[k] = v
		}
	}
	for k, v := range e.opts.Fields[meas] {
		out[k] = v
	}
	return out
}

func (e *Engine) compileRule(d *Def, errs *[]Error) *rule {
	r := &rule{def: *d, e: e, enabled: d.Enabled, keys: map[string]*keyState{}, sel: selectors(&d.Trigger)}
	if d.Plugin != nil {
		return e.compilePlugin(r, d, errs)
	}
	meas := d.Trigger.Measurement
	if d.Trigger.Event != "" {
		meas = d.Trigger.Event
	}
	r.fieldTypes = e.fieldTypes(meas)
	if d.Trigger.Virtual != "" || d.Trigger.Every > 0 {
		r.fieldTypes = map[string]payload.ValueType{}
	}
	for k, t := range d.Fields {
		r.fieldTypes[k] = parseType(t)
	}
	// The expressions are checked against typed names; they run on a map
	// holding the current values.
	env := map[string]any{"value": nil, "fields": map[string]any{}, "tags": map[string]string{}, "device": "",
		"measurement": "", "time": time.Time{}, "rule": d.Name, "name": ""}
	typed := types.Map{"value": types.Any, "fields": types.TypeOf(map[string]any{}), "tags": types.TypeOf(map[string]string{}),
		"device": types.String, "measurement": types.String, "time": types.TypeOf(time.Time{}), "rule": types.String,
		"name": types.String}
	for k, t := range r.fieldTypes {
		if !contains(baseNames, k) && payload.ValidIdent(k) {
			env[k] = nil
			typed[k] = exprType(t)
		}
	}
	r.env = env
	c := &compiler{r: r, errs: errs, def: d}
	c.opts = []expr.Option{expr.Env(typed), expr.DisableBuiltin("now"), expr.MaxNodes(2000),
		expr.Function("now", func(...any) (any, error) { return r.now, nil }, new(func() time.Time)),
		expr.Function("prev", func(p ...any) (any, error) { return r.prev(p[0].(string)), nil }, new(func(string) any)),
		expr.Function("held_for", func(p ...any) (any, error) { return r.heldFor(p[0].(string)), nil }, new(func(string) time.Duration)),
		expr.Function("held", func(p ...any) (any, error) { return r.held(p[0].(string), p[1]), nil }, new(func(string, any) time.Duration)),
		expr.Function("count_within", func(p ...any) (any, error) { return r.countWithin(p[0].(string)) }, new(func(string) int)),
		expr.Function("count_true", func(p ...any) (any, error) { return r.countTrue(p[0].(string)), nil }, new(func(string) int)),
		expr.Function("virtual", func(p ...any) (any, error) { return r.virtual(p[0].(string)), nil }, new(func(string) any)),
	}
	before := len(*errs)
	var u uses
	u.fields = map[string]bool{}
	if d.When != "" {
		r.cond = c.compile(d.When, true, d.WhenPos, "when", &u)
	}
	r.condFields = sortedKeys(u.fields)
	for i := range d.Actions {
		r.actions = append(r.actions, c.action(&d.Actions[i], fmt.Sprintf("actions[%d].%s", i, d.Actions[i].Kind), &u))
	}
	if len(*errs) > before {
		return nil
	}
	r.allFields = sortedKeys(u.fields)
	r.usesFieldMap = u.allFields
	r.timeDep = u.timeDep && (d.Trigger.Every == 0)
	r.window = u.window
	return r
}

// action is a compiled ActionDef.
type action struct {
	def                    *ActionDef
	message, device, point *template
	value, on, off         any
	valueT, onT, offT      *template
	name                   *template
	args                   map[string]*template
	tags                   map[string]*template
	fieldConst             map[string]any
	fieldT                 map[string]*template
	measurement, eventKind string
	alertSeverity, setName string
}

func (c *compiler) action(a *ActionDef, p string, u *uses) *action {
	x := &action{def: a}
	tmpl := func(s, key string) *template {
		if s == "" {
			return nil
		}
		return c.template(s, a.Pos, p+"."+key, u)
	}
	switch a.Kind {
	case ActAlert:
		x.alertSeverity = a.Severity
		x.message = tmpl(a.Message, "message")
		x.device = tmpl(a.Device, "device")
	case ActEmit:
		x.measurement = a.Measurement
		x.eventKind = a.EventKind
		x.tags = map[string]*template{}
		for k, v := range a.Tags {
			x.tags[k] = tmpl(v, "tags."+k)
		}
		x.fieldConst, x.fieldT = map[string]any{}, map[string]*template{}
		for k, v := range a.FieldVals {
			cv, t := c.valueOf(v, a.Pos, p+".fields."+k, u)
			if t != nil {
				x.fieldT[k] = t
			} else {
				x.fieldConst[k] = cv
			}
		}
	case ActWrite, ActHold, ActPulse:
		x.device = tmpl(a.Device, "device")
		x.point = tmpl(a.Point, "point")
		x.value, x.valueT = c.valueOf(a.Value, a.Pos, p+".value", u)
		x.on, x.onT = c.valueOf(a.On, a.Pos, p+".on", u)
		x.off, x.offT = c.valueOf(a.Off, a.Pos, p+".off", u)
	case ActCommand:
		x.name = tmpl(a.Name, "name")
		x.args = map[string]*template{}
		for k, v := range a.Args {
			x.args[k] = tmpl(v, "args."+k)
		}
	case ActSet:
		x.setName = a.Name
		x.value, x.valueT = c.valueOf(a.Value, a.Pos, p+".value", u)
	}
	return x
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Names returns the rule names in declaration order.
func (e *Engine) Names() []string {
	out := make([]string, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.def.Name
	}
	return out
}

// Observe evaluates the rules on telemetry records. The gateway calls it
// with the records that report-by-exception let through (see docs/rules.md).
// It never waits for an action.
func (e *Engine) Observe(recs []payload.Record) { e.observe(recs, false) }

// ObserveEvents evaluates the rules on event records (fault, access, door,
// barrier): rules with an event trigger see only these.
func (e *Engine) ObserveEvents(recs []payload.Record) { e.observe(recs, true) }

func (e *Engine) observe(recs []payload.Record, events bool) {
	if len(recs) == 0 {
		return
	}
	var key strings.Builder
	e.mu.Lock()
	defer e.mu.Unlock()
	// The clock is read under the lock, so evaluations see time move
	// forward only: a stale reading taken before waiting for the lock
	// would end a condition that already holds and fire it again.
	now := e.clock.Now()
	for i := range recs {
		rec := &recs[i]
		if events && rec.Measurement == "fault" && rec.Fields["state"] == payload.String("online") {
			e.reassert(rec.Tags["device"])
		}
		t := rec.Time
		if t.IsZero() {
			t = now
		}
		key.Reset()
		SeriesKey(&key, rec, nil)
		full := key.String()
		e.cand = e.cand[:0]
		if events {
			if x := e.byEvent[rec.Measurement]; x != nil {
				e.cand = x.candidates(rec, e.cand)
			}
		} else {
			if x := e.byMeas[rec.Measurement]; x != nil {
				e.cand = x.candidates(rec, e.cand)
			}
			e.cand = e.byDevice.candidates(rec, e.cand)
		}
		if len(e.cand) > 1 {
			slices.SortFunc(e.cand, func(a, b *rule) int { return a.order - b.order })
		}
		for _, r := range e.cand {
			r.observe(rec, full, t)
		}
	}
	e.chain()
}

// chain observes virtual values that changed, a bounded number of rounds.
func (e *Engine) chain() {
	for round := 0; len(e.pending) > 0; round++ {
		recs := e.pending
		e.pending = nil
		if round >= maxChain {
			e.log.Warn("rules: virtual values keep changing each other; stopped after a bounded number of rounds",
				"rounds", maxChain, "virtual", recs[0].Tags["name"])
			return
		}
		for i := range recs {
			rec := &recs[i]
			name := rec.Tags["name"]
			for _, r := range e.byVirtual[name] {
				r.observe(rec, name, rec.Time)
			}
		}
	}
}

// SeriesKey writes a record's series key: its measurement and the tags
// named by keys (all tags when keys is nil), sorted.
func SeriesKey(b *strings.Builder, rec *payload.Record, keys []string) {
	b.WriteString(rec.Measurement)
	if keys != nil {
		for _, k := range keys {
			b.WriteByte(',')
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(rec.Tags[k])
		}
		return
	}
	var small [16]string
	names := small[:0]
	for k := range rec.Tags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteByte(',')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(rec.Tags[k])
	}
}

// Tick checks schedules and re-evaluates time-dependent conditions at the
// clock's current time. Run calls it every Options.Tick; tests call it
// after moving a fake clock.
func (e *Engine) Tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now() // under the lock: see observe
	for _, r := range e.timed {
		if r.def.Trigger.Every > 0 {
			r.schedule(now)
			continue
		}
		for _, ks := range r.keys {
			r.recheck(ks, now)
		}
	}
	e.chain()
}

// Enable turns a rule on or off. A disabled rule keeps tracking its series
// (so prev, held_for and count_within stay right) but neither evaluates nor
// fires; when turned on again its conditions start from "not holding", so a
// condition that holds fires once.
func (e *Engine) Enable(name string, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.byName[name]
	if r == nil {
		return fmt.Errorf("rules: enable %q: %w", name, ErrUnknownRule)
	}
	if on && !r.enabled {
		for _, ks := range r.keys {
			ks.active = false
		}
	}
	r.enabled = on
	e.log.Info("rule switched", "rule", name, "enabled", on)
	return nil
}

// Virtual returns a virtual value set by a rule.
func (e *Engine) Virtual(name string) (payload.Value, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.virtual[name]
	return v, ok
}

// Run carries out queued actions and ticks until ctx ends. It returns after
// its workers stopped and pulses in progress were switched off.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.worker(ctx, e.recQ) }()
	go func() { defer wg.Done(); e.worker(ctx, e.devQ) }()
	for _, r := range e.rules {
		if r.plug != nil {
			wg.Add(1)
			go func() { defer wg.Done(); r.runPlugin(ctx) }()
		}
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			e.pulses.Wait()
			return nil
		case <-e.clock.After(e.opts.Tick):
			e.Tick()
		}
	}
}

// enqueue hands a job to its worker, or drops and counts it when the
// worker is behind.
func (e *Engine) enqueue(j job) {
	q := e.devQ
	if j.kind == ActAlert || j.kind == ActEmit || j.kind == ActSet {
		q = e.recQ
	}
	select {
	case q <- j:
	default:
		if j.kind == ActHold {
			// Not written: the next evaluation writes it again.
			delete(e.held, j.device+"\x00"+j.point)
		}
		e.dropped.Add(1)
		n := j.r.dropped.Add(1)
		if n == 1 || n%100 == 0 {
			e.log.Warn("rules: action queue full, action dropped", "rule", j.r.def.Name, "action", j.kind,
				"dropped", n, "device", j.device)
		}
	}
}

func (e *Engine) worker(ctx context.Context, q chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			e.do(ctx, j)
		}
	}
}

func (e *Engine) do(ctx context.Context, j job) {
	var err error
	switch j.kind {
	case ActAlert, ActEmit, ActSet:
		if e.opts.Emitter == nil {
			err = errors.New("no emitter")
			break
		}
		kind := payload.Telemetry
		if j.event {
			kind = payload.Event
		}
		e.opts.Emitter.Emit(ctx, kind, j.recs)
	case ActWrite, ActHold:
		if e.opts.Writer == nil {
			err = errors.New("no device writer")
			break
		}
		err = e.opts.Writer.Write(ctx, j.device, j.point, j.value)
		if err != nil && j.kind == ActHold {
			e.unhold(j)
		}
	case ActPulse:
		if e.opts.Writer == nil {
			err = errors.New("no device writer")
			break
		}
		if err = e.opts.Writer.Write(ctx, j.device, j.point, j.value); err != nil {
			break
		}
		e.pulses.Add(1)
		go e.pulseOff(ctx, j)
	case ActCommand:
		if e.opts.Commander == nil {
			err = errors.New("no commander")
			break
		}
		err = e.opts.Commander.Command(ctx, j.name, j.args)
	}
	if err != nil {
		e.failed.Add(1)
		j.r.actionErrs.Add(1)
		e.log.Warn("rules: action failed", "rule", j.r.def.Name, "action", j.kind, "device", j.device,
			"point", j.point, "command", j.name, "err", err)
		return
	}
	e.done.Add(1)
}

// pulseOff switches a pulsed output back after its duration. At shutdown it
// switches it back at once, so no relay stays on.
func (e *Engine) pulseOff(ctx context.Context, j job) {
	defer e.pulses.Done()
	clock.Sleep(ctx, e.clock, j.dur) //nolint:errcheck // at shutdown: switch back at once
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.opts.Writer.Write(wctx, j.device, j.point, j.off); err != nil {
		e.failed.Add(1)
		j.r.actionErrs.Add(1)
		e.log.Error("rules: pulse could not switch the output back", "rule", j.r.def.Name, "device", j.device,
			"point", j.point, "err", err)
		return
	}
	e.done.Add(1)
}

// globMatch matches s against a path.Match pattern; a bad pattern (refused
// at load) never matches.
func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return ok && err == nil
}

// index finds the rules a record may trigger without trying each one: a
// rule with a literal tag selector is filed under its first such tag and
// value, the others are tried on every record.
type index struct {
	scan  []*rule
	byTag map[string]map[string][]*rule
	keys  []string // tag names used in byTag
}

func indexOf(m map[string]*index, name string) *index {
	x := m[name]
	if x == nil {
		x = &index{}
		m[name] = x
	}
	return x
}

func (x *index) add(r *rule) {
	for _, s := range r.sel {
		if !s.lit {
			continue
		}
		if x.byTag == nil {
			x.byTag = map[string]map[string][]*rule{}
		}
		vals := x.byTag[s.key]
		if vals == nil {
			vals = map[string][]*rule{}
			x.byTag[s.key] = vals
			x.keys = append(x.keys, s.key)
		}
		vals[s.pat] = append(vals[s.pat], r)
		return
	}
	x.scan = append(x.scan, r)
}

// candidates appends the rules whose trigger rec may match.
func (x *index) candidates(rec *payload.Record, buf []*rule) []*rule {
	buf = append(buf, x.scan...)
	for _, k := range x.keys {
		if v, ok := rec.Tags[k]; ok {
			buf = append(buf, x.byTag[k][v]...)
		}
	}
	return buf
}

// tagSel is one tag condition of a trigger.
type tagSel struct {
	key, pat string
	lit      bool // pat has no glob characters
}

// selectors compiles a trigger's tag and device conditions.
func selectors(t *Trigger) []tagSel {
	var out []tagSel
	add := func(k, p string) {
		out = append(out, tagSel{key: k, pat: p, lit: !strings.ContainsAny(p, `*?[\`)})
	}
	if t.Device != "" {
		add("device", t.Device)
	}
	for _, k := range sortedKeys(t.Tags) {
		add(k, t.Tags[k])
	}
	return out
}
