package rules

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Plugin rules. A rule with a plugin: section instead of when: and
// actions: hands the records its trigger selects to a plugin program
// (plugins/host, written with plugins/sdk) and carries out the actions the
// plugin returns, through the same queues as built-in actions. Observe
// never waits for a plugin: records wait in a bounded queue per rule, and
// one worker per rule calls the plugin with what has gathered.

// PluginDef is a rule's plugin: section.
type PluginDef struct {
	Path        string
	SHA256      string
	Config      map[string]any // the plugin's own settings, sent as JSON
	CallTimeout time.Duration  // 0: the plugin host's default
	Pos         Pos
}

// PluginRule is a started plugin rule, as Options.Plugins makes it.
type PluginRule interface {
	// Evaluate passes records (or a tick) to the plugin and returns the
	// actions it asked for. It is called by one goroutine at a time.
	Evaluate(ctx context.Context, in PluginInput) ([]PluginAction, error)
	// Close stops the plugin.
	Close() error
}

// PluginEventSource is implemented by plugin rules that report their own
// faults (crashes, hangs, restarts) as event records.
type PluginEventSource interface {
	TakeEvents() []payload.Record
}

// PluginInput is one call of a plugin rule.
type PluginInput struct {
	Records []payload.Record // oldest first
	Now     time.Time
	Tick    bool // a scheduled call (trigger every:) without records
}

// PluginAction is one action a plugin rule asked for.
type PluginAction struct {
	Kind     string // ActEmit, ActAlert or ActWrite
	Event    bool   // ActEmit: into events rather than telemetry
	Record   payload.Record
	Severity string // ActAlert
	Message  string // ActAlert
	Device   string // ActAlert (optional), ActWrite
	Point    string // ActWrite
	Value    payload.Value
}

// ErrPluginDown marks an Evaluate that failed because the plugin is not
// running (crashed, hung, waiting to restart): the engine calls again
// later, so that the restarted plugin gets the rule's state back, even when
// no new record comes.
var ErrPluginDown = errors.New("plugin is not running")

// Retry waits after ErrPluginDown: pluginRetryMin doubling to
// pluginRetryMax.
const (
	pluginRetryMin = time.Second
	pluginRetryMax = 30 * time.Second
)

// PluginFactory makes the plugin rule for a rule's plugin: section. It
// should check the section and start nothing: plugins start at their first
// call.
type PluginFactory func(rule string, def *PluginDef) (PluginRule, error)

// maxPluginPending bounds the records that wait for one plugin rule.
const maxPluginPending = 4096

var pluginKeys = []string{"path", "sha256", "config", "call_timeout"}

// plugin decodes a rule's plugin: section.
func (d *decoder) plugin(n *yaml.Node) *PluginDef {
	def := &PluginDef{}
	if n != nil {
		def.Pos = Pos{n.Line, n.Column}
	}
	m := d.fields(n, "plugin", pluginKeys)
	if m == nil {
		return def
	}
	if p := m["path"]; p == nil {
		d.errorf(n, "plugin.path", "required key is missing (the plugin program, e.g. /opt/luling/plugins/zone-guidance)")
	} else if s, ok := d.str(p, "plugin.path"); ok {
		if s == "" {
			d.errorf(p, "plugin.path", "must not be empty")
		}
		def.Path = s
	}
	if p := m["sha256"]; p == nil {
		d.errorf(n, "plugin.sha256", "required key is missing (the program's sha256sum, 64 hex digits)")
	} else if s, ok := d.str(p, "plugin.sha256"); ok {
		def.SHA256 = s
	}
	if c := m["config"]; c != nil {
		var v any
		if err := resolve(c).Decode(&v); err != nil {
			d.errorf(c, "plugin.config", "cannot be read: %v", err)
		} else if cm, ok := jsonable(v).(map[string]any); ok {
			def.Config = cm
		} else {
			d.errorf(c, "plugin.config", "got %s, want a mapping of the plugin's settings", describe(c))
		}
	}
	if t := m["call_timeout"]; t != nil {
		def.CallTimeout = d.duration(t, "plugin.call_timeout", time.Millisecond, time.Minute)
	}
	return def
}

// jsonable turns what yaml decodes into values encoding/json accepts
// (mappings with any keys become string-keyed).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	}
	return v
}

// plugState is a plugin rule's queue.
type plugState struct {
	p       PluginRule
	mu      sync.Mutex
	pending []payload.Record
	tick    bool
	signal  chan struct{}
	dropped atomic.Uint64
}

// compilePlugin makes a plugin rule.
func (e *Engine) compilePlugin(r *rule, d *Def, errs *[]Error) *rule {
	fail := func(msg string) *rule {
		*errs = append(*errs, Error{File: d.File, Line: d.Plugin.Pos.Line, Col: d.Plugin.Pos.Col, Rule: d.Name, RuleLine: d.Line,
			Path: "plugin", Msg: msg})
		return nil
	}
	if e.opts.Plugins == nil {
		return fail("plugin rules need gatewayd-full: this binary is built without the plugin host")
	}
	p, err := e.opts.Plugins(d.Name, d.Plugin)
	if err != nil {
		return fail(err.Error())
	}
	r.plug = &plugState{p: p, signal: make(chan struct{}, 1)}
	return r
}

// add queues a record for the plugin. The engine's lock is held.
func (r *rule) addPlugin(rec *payload.Record, t time.Time) {
	ps := r.plug
	ps.mu.Lock()
	full := len(ps.pending) >= maxPluginPending
	if !full {
		c := *rec
		c.Time = t
		ps.pending = append(ps.pending, c)
	}
	ps.mu.Unlock()
	if full {
		if n := ps.dropped.Add(1); n == 1 || n%1000 == 0 {
			r.e.log.Warn("rules: plugin rule falls behind; records dropped", "rule", r.def.Name, "dropped", n, "waiting", maxPluginPending)
		}
		return
	}
	select {
	case ps.signal <- struct{}{}:
	default:
	}
}

// tickPlugin asks for a scheduled call. The engine's lock is held.
func (r *rule) tickPlugin() {
	ps := r.plug
	ps.mu.Lock()
	ps.tick = true
	ps.mu.Unlock()
	select {
	case ps.signal <- struct{}{}:
	default:
	}
}

// runPlugin calls the plugin with what has gathered until ctx ends, then
// stops the plugin.
func (r *rule) runPlugin(ctx context.Context) {
	ps := r.plug
	defer ps.p.Close()
	var retry clock.Timer // armed while the plugin is down
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	wait := pluginRetryMin
	for {
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C()
		}
		select {
		case <-ctx.Done():
			return
		case <-ps.signal:
		case <-retryC:
			ps.mu.Lock()
			ps.tick = true // an empty call: the plugin host hands a restarted plugin its state
			ps.mu.Unlock()
		}
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		ps.mu.Lock()
		recs, tick := ps.pending, ps.tick
		ps.pending, ps.tick = nil, false
		ps.mu.Unlock()
		if len(recs) == 0 && !tick {
			continue
		}
		now := r.e.clock.Now()
		start := time.Now() // the call's real cost, for the latency histogram
		acts, err := ps.p.Evaluate(ctx, PluginInput{Records: recs, Now: now, Tick: len(recs) == 0})
		if ctx.Err() != nil {
			return
		}
		took := time.Since(start)
		if errors.Is(err, ErrPluginDown) {
			retry = r.e.clock.NewTimer(wait)
			wait = min(2*wait, pluginRetryMax)
		} else {
			wait = pluginRetryMin
		}
		r.e.mu.Lock()
		r.evals++
		r.hist.add(took)
		if err != nil {
			r.errs++
			r.setErr("plugin: " + err.Error())
		}
		if len(acts) > 0 {
			r.fires++
		}
		enabled := r.enabled
		r.e.mu.Unlock()
		if es, ok := ps.p.(PluginEventSource); ok {
			if ev := es.TakeEvents(); len(ev) > 0 {
				r.e.enqueue(job{r: r, kind: ActEmit, recs: ev, event: true})
			}
		}
		if !enabled {
			continue
		}
		for i := range acts {
			r.e.enqueue(r.pluginJob(&acts[i], now))
		}
	}
}

// pluginJob turns a plugin's action into a queued job.
func (r *rule) pluginJob(a *PluginAction, now time.Time) job {
	switch a.Kind {
	case ActAlert:
		tags := map[string]string{"rule": r.def.Name, "severity": a.Severity}
		if a.Device != "" {
			tags["device"] = a.Device
		}
		rec := payload.Record{Measurement: "alert", Tags: tags, Time: now,
			Fields: map[string]payload.Value{"message": payload.String(a.Message)}}
		return job{r: r, kind: ActAlert, recs: []payload.Record{rec}, event: true, device: a.Device}
	case ActWrite:
		return job{r: r, kind: ActWrite, device: a.Device, point: a.Point, value: a.Value}
	}
	rec := a.Record
	if rec.Time.IsZero() {
		rec.Time = now
	}
	if _, ok := rec.Tags["rule"]; !ok {
		tags := make(map[string]string, len(rec.Tags)+1)
		for k, v := range rec.Tags {
			tags[k] = v
		}
		tags["rule"] = r.def.Name
		rec.Tags = tags
	}
	return job{r: r, kind: ActEmit, recs: []payload.Record{rec}, event: a.Event}
}
