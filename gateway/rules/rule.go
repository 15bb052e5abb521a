package rules

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/payload"
)

// rule is a compiled Def and its state. Its fields are guarded by the
// engine's mutex, except the atomic counters.
type rule struct {
	def          Def
	e            *Engine
	order        int      // position in the file(s)
	sel          []tagSel // the trigger's tag and device conditions
	enabled      bool
	fieldTypes   map[string]payload.ValueType
	env          map[string]any // the expression environment, refilled for each evaluation
	cond         *program
	condFields   []string // bare fields the condition uses: a record without them is skipped
	allFields    []string // bare fields any expression uses
	usesFieldMap bool
	timeDep      bool
	window       time.Duration
	actions      []*action

	keys    map[string]*keyState
	nextRun time.Time // schedules

	// the evaluation in progress, read by the helper functions
	cur *keyState
	now time.Time

	evals, fires, errs, skipped, suppressed uint64
	dropped, actionErrs                     atomic.Uint64
	lastErr                                 string
	hist                                    histogram

	plug *plugState // a plugin rule
}

// keyState is what a rule keeps about one series.
type keyState struct {
	meas   string
	tags   map[string]string
	last   map[string]payload.Value
	prev   map[string]payload.Value
	since  map[string]time.Time
	at     time.Time // time of the last record
	value  any       // the last record's value
	hits   []time.Time
	active bool
	fired  time.Time
}

// matches reports whether rec passes the trigger's selector (the
// measurement or event type was matched by the engine's index).
func (r *rule) matches(rec *payload.Record) bool {
	for _, s := range r.sel {
		v, ok := rec.Tags[s.key]
		if !ok || (s.lit && v != s.pat) || (!s.lit && !globMatch(s.pat, v)) {
			return false
		}
	}
	return true
}

// observe takes one record: it updates the series state and evaluates.
func (r *rule) observe(rec *payload.Record, fullKey string, t time.Time) {
	if !r.matches(rec) {
		return
	}
	if r.plug != nil {
		if r.enabled {
			r.addPlugin(rec, t)
		}
		return
	}
	key := fullKey
	if r.def.Key != nil {
		var b strings.Builder
		SeriesKey(&b, rec, r.def.Key)
		key = b.String()
	}
	ks := r.keys[key]
	if ks == nil {
		if len(r.keys) >= r.e.opts.MaxKeys {
			r.errs++
			r.setErr(fmt.Sprintf("more than %d series; records of further series are not evaluated", r.e.opts.MaxKeys))
			return
		}
		ks = &keyState{meas: rec.Measurement, last: map[string]payload.Value{}, since: map[string]time.Time{}}
		r.keys[key] = ks
	}
	first := ks.at.IsZero()
	changed := false
	for _, f := range r.def.Trigger.Changed {
		nv, ok := rec.Fields[f]
		ov, had := ks.last[f]
		if ok && had && !nv.Equal(ov) {
			changed = true
		}
	}
	// The current fields become the previous ones; both maps stay allocated.
	if ks.prev == nil {
		ks.prev = make(map[string]payload.Value, len(rec.Fields))
	}
	ks.prev, ks.last = ks.last, ks.prev
	clear(ks.last)
	for k, v := range rec.Fields {
		if ov, had := ks.prev[k]; !had || !ov.Equal(v) {
			ks.since[k] = t
		}
		ks.last[k] = v
	}
	if len(ks.since) > len(ks.last) {
		for k := range ks.since {
			if _, ok := ks.last[k]; !ok {
				delete(ks.since, k)
			}
		}
	}
	ks.tags, ks.at = rec.Tags, t
	ks.value = recordValue(rec)
	if len(r.def.Trigger.Changed) > 0 && (first || !changed) {
		return
	}
	if r.window > 0 {
		ks.hits = append(ks.hits, t)
		prune(ks, t, r.window)
	}
	if !r.enabled {
		return
	}
	r.evaluate(ks, t, false)
}

// recordValue is what value stands for: the field called value, or the
// record's only field.
func recordValue(rec *payload.Record) any {
	if v, ok := rec.Fields["value"]; ok {
		return plain(v)
	}
	if len(rec.Fields) == 1 {
		for _, v := range rec.Fields {
			return plain(v)
		}
	}
	return nil
}

// plain returns a record value as bool, int, float64 or string.
func plain(v payload.Value) any {
	if v.Type() == payload.TypeInt {
		return int(v.Int())
	}
	return v.Interface()
}

func prune(ks *keyState, now time.Time, window time.Duration) {
	cut := 0
	for cut < len(ks.hits) && now.Sub(ks.hits[cut]) >= window {
		cut++
	}
	if len(ks.hits)-cut > maxHits {
		cut = len(ks.hits) - maxHits
	}
	if cut > 0 {
		n := copy(ks.hits, ks.hits[cut:])
		ks.hits = ks.hits[:n]
	}
}

// recheck re-evaluates a time-dependent condition on a series' last record.
func (r *rule) recheck(ks *keyState, now time.Time) {
	if !r.enabled || ks.at.IsZero() {
		return
	}
	if r.window > 0 {
		prune(ks, now, r.window)
	}
	r.evaluate(ks, now, true)
}

// schedule runs a rule with an every: trigger when it is due.
func (r *rule) schedule(now time.Time) {
	every := r.def.Trigger.Every
	if r.nextRun.IsZero() {
		r.nextRun = now.Truncate(every).Add(every)
		return
	}
	if now.Before(r.nextRun) {
		return
	}
	for !r.nextRun.After(now) {
		r.nextRun = r.nextRun.Add(every)
	}
	if r.plug != nil {
		if r.enabled {
			r.tickPlugin()
		}
		return
	}
	ks := r.keys[""]
	if ks == nil {
		ks = &keyState{last: map[string]payload.Value{}, since: map[string]time.Time{}}
		r.keys[""] = ks
	}
	ks.at = now
	if r.window > 0 {
		ks.hits = append(ks.hits, now)
		prune(ks, now, r.window)
	}
	if r.enabled {
		r.evaluate(ks, now, false)
	}
}

// fill loads the expression environment with a series' state.
func (r *rule) fill(ks *keyState, now time.Time) bool {
	env := r.env
	for _, f := range r.condFields {
		if _, ok := ks.last[f]; !ok {
			return false
		}
	}
	for _, f := range r.allFields {
		if v, ok := ks.last[f]; ok {
			env[f] = native(v, r.fieldTypes[f])
		} else {
			env[f] = nil
		}
	}
	if r.usesFieldMap {
		m := make(map[string]any, len(ks.last))
		for k, v := range ks.last {
			m[k] = plain(v)
		}
		env["fields"] = m
	}
	tags := ks.tags
	if tags == nil {
		tags = map[string]string{}
	}
	env["tags"] = tags
	env["device"] = tags["device"]
	env["measurement"] = ks.meas
	env["time"] = ks.at
	env["value"] = ks.value
	env["name"] = tags["name"]
	r.cur, r.now = ks, now
	return true
}

// evaluate runs the condition and fires when the fire semantics say so.
func (r *rule) evaluate(ks *keyState, now time.Time, recheck bool) {
	start := time.Now() // real time: the evaluation's cost, for the latency histogram
	defer func() {
		r.hist.add(time.Since(start))
		r.cur = nil
	}()
	if !r.fill(ks, now) {
		if !recheck {
			r.skipped++
		}
		return
	}
	r.evals++
	holds := true
	if r.cond != nil {
		out, err := runProgram(r.cond, r.env)
		if err != nil {
			r.errs++
			r.setErr("when: " + err.Error())
			return
		}
		holds, _ = out.(bool)
	}
	fire := holds
	if r.def.Fire == Edge && r.cond != nil {
		fire = holds && !ks.active
		ks.active = holds
	} else if recheck {
		// Level rules and rules without a condition fire on triggers, not
		// on the passing of time.
		fire = false
	}
	if !fire {
		return
	}
	if r.def.Cooldown > 0 && !ks.fired.IsZero() && now.Sub(ks.fired) < r.def.Cooldown {
		r.suppressed++
		return
	}
	ks.fired = now
	r.fires++
	for _, a := range r.actions {
		if err := r.prepare(a, now); err != nil {
			r.errs++
			r.setErr(fmt.Sprintf("%s action: %v", a.def.Kind, err))
		}
	}
}

func (r *rule) setErr(msg string) {
	if msg != r.lastErr {
		r.e.log.Warn("rules: evaluation failed", "rule", r.def.Name, "err", msg)
	}
	r.lastErr = msg
}

// prepare renders an action's templates and queues it.
func (r *rule) prepare(a *action, now time.Time) error {
	env := renderEnv(r.env)
	switch a.def.Kind {
	case ActAlert:
		return r.prepareAlert(a, env, now)
	case ActEmit:
		return r.prepareEmit(a, env, now)
	case ActWrite, ActHold, ActPulse:
		return r.prepareWrite(a, env)
	case ActCommand:
		return r.prepareCommand(a, env)
	case ActSet:
		return r.prepareSet(a, env, now)
	}
	return nil
}

// renderEnv renders an action's templates against one evaluation.
type renderEnv map[string]any

// str renders t as a string; "" for no template.
func (env renderEnv) str(t *template) (string, error) {
	if t == nil {
		return "", nil
	}
	return t.renderString(env)
}

// val renders t as a value, or takes the constant c when there is no
// template.
func (env renderEnv) val(c any, t *template) (payload.Value, error) {
	if t != nil {
		v, err := t.render(env)
		if err != nil {
			return payload.Value{}, err
		}
		return toValue(v)
	}
	return toValue(c)
}

func (r *rule) prepareAlert(a *action, env renderEnv, now time.Time) error {
	msg, err := env.str(a.message)
	if err != nil {
		return err
	}
	dev := env["device"].(string)
	if a.device != nil {
		if dev, err = env.str(a.device); err != nil {
			return err
		}
	}
	tags := map[string]string{"rule": r.def.Name, "severity": a.alertSeverity}
	if dev != "" {
		tags["device"] = dev
	}
	rec := payload.Record{Measurement: "alert", Tags: tags, Time: now,
		Fields: map[string]payload.Value{"message": payload.String(msg)}}
	r.e.enqueue(job{r: r, kind: ActAlert, recs: []payload.Record{rec}, event: true, device: dev})
	return nil
}

func (r *rule) prepareEmit(a *action, env renderEnv, now time.Time) error {
	rec := payload.Record{Measurement: a.measurement, Time: now, Tags: map[string]string{"rule": r.def.Name},
		Fields: make(map[string]payload.Value, len(a.fieldConst)+len(a.fieldT))}
	for k, t := range a.tags {
		s, err := env.str(t)
		if err != nil {
			return err
		}
		rec.Tags[k] = s
	}
	for k, c := range a.fieldConst {
		v, err := toValue(c)
		if err != nil {
			return fmt.Errorf("field %s: %w", k, err)
		}
		rec.Fields[k] = v
	}
	for k, t := range a.fieldT {
		v, err := env.val(nil, t)
		if err != nil {
			return fmt.Errorf("field %s: %w", k, err)
		}
		rec.Fields[k] = v
	}
	if err := payload.CheckSchema(&rec); err != nil {
		return err
	}
	r.e.enqueue(job{r: r, kind: ActEmit, recs: []payload.Record{rec}, event: a.eventKind == "event"})
	return nil
}

// prepareWrite queues a write or a pulse.
func (r *rule) prepareWrite(a *action, env renderEnv) error {
	dev, err := env.str(a.device)
	if err != nil {
		return err
	}
	point, err := env.str(a.point)
	if err != nil {
		return err
	}
	if dev == "" || point == "" {
		return fmt.Errorf("device %q, point %q: both must be set", dev, point)
	}
	j := job{r: r, kind: a.def.Kind, device: dev, point: point, dur: a.def.For}
	if a.def.Kind != ActPulse {
		j.value, err = env.val(a.value, a.valueT)
	} else {
		if j.value, err = env.val(a.on, a.onT); err == nil {
			j.off, err = env.val(a.off, a.offT)
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", dev, point, err)
	}
	if a.def.Kind == ActHold && !r.e.hold(j) {
		return nil
	}
	r.e.enqueue(j)
	return nil
}

func (r *rule) prepareCommand(a *action, env renderEnv) error {
	name, err := env.str(a.name)
	if err != nil {
		return err
	}
	args := make(map[string]string, len(a.args))
	for k, t := range a.args {
		if args[k], err = env.str(t); err != nil {
			return err
		}
	}
	r.e.enqueue(job{r: r, kind: ActCommand, name: name, args: args})
	return nil
}

// prepareSet sets a virtual value; an unchanged value triggers nothing.
func (r *rule) prepareSet(a *action, env renderEnv, now time.Time) error {
	v, err := env.val(a.value, a.valueT)
	if err != nil {
		return fmt.Errorf("%s: %w", a.setName, err)
	}
	if old, had := r.e.virtual[a.setName]; had && old.Equal(v) {
		return nil
	}
	r.e.virtual[a.setName] = v
	rec := payload.Record{Measurement: "virtual", Tags: map[string]string{"name": a.setName}, Time: now,
		Fields: map[string]payload.Value{"value": v}}
	r.e.pending = append(r.e.pending, rec)
	r.e.enqueue(job{r: r, kind: ActSet, recs: []payload.Record{rec}})
	return nil
}

// Helpers reachable from expressions. They read the evaluation in progress.

func (r *rule) prev(field string) any {
	if r.cur == nil {
		return nil
	}
	v, ok := r.cur.prev[field]
	if !ok {
		return nil
	}
	if t, ok := r.fieldTypes[field]; ok {
		return native(v, t)
	}
	return plain(v)
}

func (r *rule) heldFor(field string) time.Duration {
	if r.cur == nil {
		return 0
	}
	s, ok := r.cur.since[field]
	if !ok || r.now.Before(s) {
		return 0
	}
	return r.now.Sub(s)
}

// held is how long field has held the value want in this series; 0 when
// its current value is another one.
func (r *rule) held(field string, want any) time.Duration {
	if r.cur == nil {
		return 0
	}
	v, ok := r.cur.last[field]
	if !ok {
		return 0
	}
	w, err := toValue(want)
	if err != nil || !sameValue(v, w) {
		return 0
	}
	return r.heldFor(field)
}

// sameValue compares two values, numbers by their value whatever their type.
func sameValue(a, b payload.Value) bool {
	num := func(t payload.ValueType) bool { return t == payload.TypeInt || t == payload.TypeFloat }
	if num(a.Type()) && num(b.Type()) {
		return a.Float() == b.Float()
	}
	return a.Equal(b)
}

func (r *rule) countWithin(window string) (int, error) {
	if r.cur == nil {
		return 0, nil
	}
	w, err := time.ParseDuration(window)
	if err != nil {
		return 0, fmt.Errorf("count_within: bad window %q", window)
	}
	n := 0
	for i := len(r.cur.hits) - 1; i >= 0 && r.now.Sub(r.cur.hits[i]) < w; i-- {
		n++
	}
	return n, nil
}

func (r *rule) virtual(name string) any {
	v, ok := r.e.virtual[name]
	if !ok {
		return nil
	}
	return plain(v)
}

// countTrue is the number of the rule's series whose field is now true.
func (r *rule) countTrue(field string) int {
	n := 0
	for _, ks := range r.keys {
		if v, ok := ks.last[field]; ok && v.Bool() {
			n++
		}
	}
	return n
}
