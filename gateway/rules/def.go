package rules

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

// Def is one rule as declared in YAML, decoded but not yet compiled.
type Def struct {
	Name    string
	File    string // file the rule was read from
	Line    int    // line of the rule's entry
	Col     int
	Enabled bool // default true

	Trigger  Trigger
	Key      []string          // tags that name a series; nil: all the record's tags
	Fields   map[string]string // extra field types the condition may name bare: bool, int, float, string
	When     string            // condition; "" fires on every trigger
	WhenPos  Pos               // where the condition's text starts in the file
	Fire     Fire
	Cooldown time.Duration
	Actions  []ActionDef
	Plugin   *PluginDef // a plugin rule: the plugin decides instead of When and Actions
}

// Pos is a place in a file.
type Pos struct{ Line, Col int }

// Trigger selects what a rule looks at. Exactly one of Measurement or
// Device (optionally both), Event, Virtual and Every is the trigger's kind.
type Trigger struct {
	Measurement string            // records of this measurement
	Tags        map[string]string // tag → value or glob (path.Match syntax) the record must have
	Device      string            // glob on the record's device tag
	Event       string            // event records (ObserveEvents) of this measurement
	Virtual     string            // changes of this virtual value
	Every       time.Duration     // schedule
	Changed     []string          // only records where one of these fields changed
}

// Fire says when a rule whose condition holds fires.
type Fire uint8

const (
	// Edge fires when the condition becomes true for a series.
	Edge Fire = iota
	// Level fires on every evaluation where the condition is true.
	Level
)

func (f Fire) String() string {
	if f == Level {
		return "level"
	}
	return "edge"
}

// Action kinds.
const (
	ActAlert   = "alert"
	ActEmit    = "emit"
	ActWrite   = "write"
	ActPulse   = "pulse"
	ActCommand = "command"
	ActSet     = "set"
	// ActHold keeps a device's output equal to its value: it writes when the
	// value differs from the one it last wrote, and again when the device
	// answers after failing (a sensor that rebooted resets its outputs).
	ActHold = "hold"
)

var actionKinds = []string{ActAlert, ActEmit, ActWrite, ActHold, ActPulse, ActCommand, ActSet}

// ActionDef is one action of a rule. String values may hold templates:
// text with {{ expression }} parts rendered when the rule fires. Value, On
// and Off hold what the YAML said: a bool, int64, float64 or string.
type ActionDef struct {
	Kind string
	Pos  Pos

	Severity string            // alert: info, warning or critical
	Message  string            // alert
	Device   string            // alert (default: the record's device), write, hold, pulse
	Point    string            // write, hold, pulse
	Value    any               // write, hold, set
	On, Off  any               // pulse (default true and false)
	For      time.Duration     // pulse
	Name     string            // command, set
	Args     map[string]string // command
	// emit
	Measurement string
	EventKind   string // "event" (default) or "telemetry"
	Tags        map[string]string
	FieldVals   map[string]any
}

// Error is one mistake in a rule, at the place where it was found.
type Error struct {
	File     string
	Line     int
	Col      int
	Rule     string // the rule's name, or "#N" when it has none
	RuleLine int    // line of the rule's entry
	Path     string // the key, e.g. "when" or "actions[1].write.value"
	Msg      string
}

// Error formats the error as FILE:LINE:COL: rule "NAME" (line N): PATH: MSG.
func (e Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:", e.File, e.Line)
	if e.Col > 0 {
		fmt.Fprintf(&b, "%d:", e.Col)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, " rule %q (line %d):", e.Rule, e.RuleLine)
	}
	if e.Path != "" {
		b.WriteString(" " + e.Path + ":")
	}
	b.WriteString(" " + e.Msg)
	return b.String()
}

// Errors lists every mistake found in a set of rules, sorted by position.
type Errors struct{ List []Error }

func (e *Errors) Error() string {
	s := make([]string, len(e.List))
	for i, x := range e.List {
		s[i] = x.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, x := range e.List {
		out[i] = x
	}
	return out
}

func (e *Errors) sorted() *Errors {
	sort.SliceStable(e.List, func(i, j int) bool {
		a, b := e.List[i], e.List[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return e
}

var (
	ruleKeys   = []string{"name", "enabled", "trigger", "key", "fields", "when", "fire", "cooldown", "actions", "plugin"}
	trigKeys   = []string{"measurement", "tags", "device", "event", "virtual", "every", "changed"}
	alertKeys  = []string{"severity", "message", "device"}
	emitKeys   = []string{"measurement", "kind", "tags", "fields"}
	writeKeys  = []string{"device", "point", "value"}
	pulseKeys  = []string{"device", "point", "on", "off", "for"}
	cmdKeys    = []string{"name", "args"}
	setKeys    = []string{"name", "value"}
	severities = []string{"info", "warning", "critical"}
	typeNames  = []string{"bool", "int", "float", "string"}
)

// Limits of one rule set.
const (
	maxRules   = 2000
	maxActions = 32
	maxExpr    = 4096 // bytes of one expression or template
)

// decoder collects errors while walking rule nodes.
type decoder struct {
	file     string
	errs     []Error
	ruleName string
	line     int
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line, col := d.line, 0
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	if line < 1 {
		line = 1
	}
	d.errs = append(d.errs, Error{File: d.file, Line: line, Col: col, Rule: d.ruleName, RuleLine: d.line, Path: path,
		Msg: strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")})
}

// ParseFile decodes a rules file: YAML whose top level holds a rules: list
// (the same list a gateway config holds). name is the file name errors carry.
func ParseFile(name string, data []byte) ([]Def, error) {
	d := &decoder{file: name}
	yx := &yamlx.Decoder{File: name}
	top, ok := yx.Parse(data)
	if !ok {
		d.take(yx) // a syntax error, with the line yaml.v3 gives it
		return nil, &Errors{List: d.errs}
	}
	var list *yaml.Node
	if top != nil {
		root := resolve(top)
		if root == nil || root.Kind != yaml.MappingNode {
			d.errorf(root, "", "expected a mapping with a rules: list, got %s", describe(root))
			return nil, &Errors{List: d.errs}
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			k := root.Content[i]
			if k.Value == "rules" {
				list = root.Content[i+1]
			} else {
				d.errorf(k, k.Value, "unknown key %q (a rules file holds only rules:)", k.Value)
			}
		}
	}
	if list == nil {
		d.errorf(nil, "rules", "required key is missing")
		return nil, &Errors{List: d.errs}
	}
	defs := d.list(list)
	if len(d.errs) > 0 {
		return nil, (&Errors{List: d.errs}).sorted()
	}
	return defs, nil
}

// DecodeNodes decodes rule entries (each a YAML mapping) read from file.
// The gateway config loader keeps the entries of its rules: list as nodes.
func DecodeNodes(file string, nodes []*yaml.Node) ([]Def, error) {
	d := &decoder{file: file}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Content: nodes}
	defs := d.list(seq)
	if len(d.errs) > 0 {
		return nil, (&Errors{List: d.errs}).sorted()
	}
	return defs, nil
}

func (d *decoder) list(n *yaml.Node) []Def {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "rules", "expected a list of rules, got %s", describe(n))
		return nil
	}
	if len(n.Content) > maxRules {
		d.errorf(n, "rules", "%d rules, more than the %d one gateway may hold", len(n.Content), maxRules)
		return nil
	}
	var defs []Def
	seen := map[string]int{}
	for i, it := range n.Content {
		def, ok := d.rule(i, it)
		if def.Name != "" {
			if first, dup := seen[def.Name]; dup {
				d.ruleName, d.line = def.Name, def.Line
				d.errorf(it, "name", "rule name %q is used twice; first at line %d", def.Name, first)
				continue
			}
			seen[def.Name] = def.Line
		}
		if ok {
			defs = append(defs, def)
		}
	}
	return defs
}

// fields returns the pairs of a mapping node, checking keys against known
// (with "did you mean") and following merge keys, through internal/yamlx.
func (d *decoder) fields(n *yaml.Node, path string, known []string) map[string]*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return nil
	}
	yx := &yamlx.Decoder{File: d.file}
	m := yx.Map(n, path, known)
	d.take(yx)
	if m == nil {
		return nil
	}
	return m.Vals
}

// take adds the errors a yamlx decoder found, in the rule's terms.
func (d *decoder) take(yx *yamlx.Decoder) {
	for _, e := range yx.Errs {
		msg := e.Msg
		if e.Hint != "" {
			msg += " (" + e.Hint + ")"
		}
		d.errs = append(d.errs, Error{File: d.file, Line: e.Line, Col: e.Col, Rule: d.ruleName, RuleLine: d.line, Path: e.Path, Msg: msg})
	}
}

func (d *decoder) rule(i int, n *yaml.Node) (Def, bool) {
	n = resolve(n)
	def := Def{File: d.file, Enabled: true}
	d.ruleName, d.line = fmt.Sprintf("#%d", i+1), 0
	if n != nil {
		def.Line, def.Col = n.Line, n.Column
		d.line = n.Line
	}
	before := len(d.errs)
	m := d.fields(n, "", ruleKeys)
	if m == nil {
		return def, false
	}
	if nn := m["name"]; nn == nil {
		d.errorf(n, "name", "required key is missing (e.g. name: overstay-zone-a)")
	} else if s, ok := d.str(nn, "name"); ok {
		if !payload.ValidDeviceID(s) {
			d.errorf(nn, "name", "%q is not a valid rule name (1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit)", s)
		} else {
			def.Name = s
			d.ruleName = s
		}
	}
	if v := m["enabled"]; v != nil {
		def.Enabled = d.boolean(v, "enabled")
	}
	if t := m["trigger"]; t == nil {
		d.errorf(n, "trigger", "required key is missing (e.g. trigger: {measurement: parking_bay})")
	} else {
		def.Trigger = d.trigger(t)
	}
	if k := m["key"]; k != nil {
		def.Key = d.strList(k, "key")
		for _, s := range def.Key {
			if s == "" {
				d.errorf(k, "key", "tag names must not be empty")
			}
		}
	}
	if f := m["fields"]; f != nil {
		fm := d.fields(f, "fields", nil)
		def.Fields = map[string]string{}
		for name, tn := range fm {
			if !payload.ValidIdent(name) {
				d.errorf(tn, "fields."+name, "%q is not a name an expression can use", name)
				continue
			}
			if s, ok := d.str(tn, "fields."+name); ok {
				if !contains(typeNames, s) {
					d.errorf(tn, "fields."+name, "unknown type %q (want bool, int, float or string)", s)
					continue
				}
				def.Fields[name] = s
			}
		}
	}
	if w := m["when"]; w != nil {
		if s, ok := d.str(w, "when"); ok {
			def.When = strings.TrimSpace(s)
			def.WhenPos = Pos{w.Line, w.Column}
			if len(s) > maxExpr {
				d.errorf(w, "when", "expression is %d bytes, longer than %d", len(s), maxExpr)
			}
		}
	}
	if f := m["fire"]; f != nil {
		if s, ok := d.str(f, "fire"); ok {
			switch s {
			case "edge":
				def.Fire = Edge
			case "level":
				def.Fire = Level
			default:
				d.errorf(f, "fire", "%q is not allowed (want edge or level)", s)
			}
		}
	}
	if c := m["cooldown"]; c != nil {
		def.Cooldown = d.duration(c, "cooldown", 0, 30*24*time.Hour)
	}
	if pn := m["plugin"]; pn != nil {
		def.Plugin = d.plugin(pn)
		for _, k := range []string{"key", "fields", "when", "fire", "cooldown", "actions"} {
			if kn := m[k]; kn != nil {
				d.errorf(kn, k, "a plugin rule's plugin decides what to do: remove %s (the trigger still selects what the plugin sees)", k)
			}
		}
		if def.Trigger.Virtual != "" {
			d.errorf(m["trigger"], "trigger.virtual", "a plugin rule cannot follow a virtual value (use measurement, device, event or every)")
		}
		return def, len(d.errs) == before
	}
	if a := m["actions"]; a == nil {
		d.errorf(n, "actions", "required key is missing: a rule needs at least one action (or a plugin: section)")
	} else {
		def.Actions = d.actions(a)
	}
	if slices.ContainsFunc(def.Actions, func(a ActionDef) bool { return a.Kind == ActHold }) {
		for _, k := range []string{"when", "fire", "cooldown"} {
			if kn := m[k]; kn != nil {
				d.errorf(kn, k, "a rule with a hold action keeps the output equal to its value on every record: remove %s and put the choice into the value (e.g. value: \"{{ occupied ? 'red' : 'green' }}\")", k)
			}
		}
	}
	return def, len(d.errs) == before
}

func (d *decoder) trigger(n *yaml.Node) Trigger {
	var t Trigger
	m := d.fields(n, "trigger", trigKeys)
	if m == nil {
		return t
	}
	kinds := 0
	if v := m["measurement"]; v != nil {
		if s, ok := d.str(v, "trigger.measurement"); ok {
			if !payload.ValidIdent(s) {
				d.errorf(v, "trigger.measurement", "%q is not a measurement name", s)
			}
			t.Measurement = s
		}
	}
	if v := m["device"]; v != nil {
		if s, ok := d.str(v, "trigger.device"); ok {
			if _, err := path.Match(s, ""); err != nil || s == "" {
				d.errorf(v, "trigger.device", "bad glob %q (use * and ? as in bay-*)", s)
			}
			t.Device = s
		}
	}
	if t.Measurement != "" || t.Device != "" {
		kinds++
	}
	if v := m["tags"]; v != nil {
		t.Tags = map[string]string{}
		for k, tv := range d.fields(v, "trigger.tags", nil) {
			if s, ok := d.str(tv, "trigger.tags."+k); ok {
				if _, err := path.Match(s, ""); err != nil {
					d.errorf(tv, "trigger.tags."+k, "bad glob %q", s)
				}
				t.Tags[k] = s
			}
		}
	}
	if v := m["event"]; v != nil {
		if s, ok := d.str(v, "trigger.event"); ok {
			if !payload.ValidIdent(s) {
				d.errorf(v, "trigger.event", "%q is not an event type (a measurement name such as access or fault)", s)
			}
			t.Event = s
			kinds++
		}
	}
	if v := m["virtual"]; v != nil {
		if s, ok := d.str(v, "trigger.virtual"); ok {
			if !payload.ValidDeviceID(s) {
				d.errorf(v, "trigger.virtual", "%q is not a virtual value name", s)
			}
			t.Virtual = s
			kinds++
		}
	}
	if v := m["every"]; v != nil {
		t.Every = d.duration(v, "trigger.every", time.Second, 7*24*time.Hour)
		kinds++
	}
	if v := m["changed"]; v != nil {
		t.Changed = d.strList(v, "trigger.changed")
	}
	switch {
	case kinds == 0:
		d.errorf(n, "trigger", "say what triggers the rule: measurement/device, event, virtual or every")
	case kinds > 1:
		d.errorf(n, "trigger", "choose one kind of trigger: measurement/device, event, virtual or every")
	}
	if len(t.Tags) > 0 && t.Measurement == "" && t.Device == "" && t.Event == "" {
		d.errorf(m["tags"], "trigger.tags", "tags select records; use them with measurement, device or event")
	}
	if len(t.Changed) > 0 && t.Measurement == "" && t.Device == "" && t.Event == "" {
		d.errorf(m["changed"], "trigger.changed", "changed applies to records; use it with measurement, device or event")
	}
	return t
}

func (d *decoder) actions(n *yaml.Node) []ActionDef {
	items := resolve(n)
	if items == nil || items.Kind != yaml.SequenceNode {
		d.errorf(n, "actions", "expected a list of actions, got %s", describe(items))
		return nil
	}
	if len(items.Content) == 0 {
		d.errorf(n, "actions", "a rule needs at least one action")
	}
	if len(items.Content) > maxActions {
		d.errorf(n, "actions", "%d actions, more than %d", len(items.Content), maxActions)
		return nil
	}
	var out []ActionDef
	for i, it := range items.Content {
		p := fmt.Sprintf("actions[%d]", i)
		m := d.fields(it, p, actionKinds)
		if m == nil {
			continue
		}
		if len(m) != 1 {
			d.errorf(it, p, "an action is one of %s; this entry has %d", strings.Join(actionKinds, ", "), len(m))
			continue
		}
		for kind, body := range m {
			a := ActionDef{Kind: kind, Pos: Pos{it.Line, it.Column}}
			d.action(&a, body, p+"."+kind)
			out = append(out, a)
		}
	}
	return out
}

func (d *decoder) action(a *ActionDef, n *yaml.Node, p string) {
	known := map[string][]string{ActAlert: alertKeys, ActEmit: emitKeys, ActWrite: writeKeys, ActHold: writeKeys, ActPulse: pulseKeys, ActCommand: cmdKeys, ActSet: setKeys}[a.Kind]
	if a.Kind == ActCommand {
		if s := resolve(n); s != nil && s.Kind == yaml.ScalarNode {
			a.Name, _ = d.str(s, p)
			return
		}
	}
	m := d.fields(n, p, known)
	if m == nil {
		return
	}
	str := func(key string, required bool) string {
		v := m[key]
		if v == nil || isNull(resolve(v)) {
			if required {
				d.errorf(n, p+"."+key, "required key is missing")
			}
			return ""
		}
		s, _ := d.str(v, p+"."+key)
		return s
	}
	switch a.Kind {
	case ActAlert:
		a.Severity = str("severity", false)
		if a.Severity == "" {
			a.Severity = "warning"
		} else if !contains(severities, a.Severity) {
			d.errorf(m["severity"], p+".severity", "%q is not allowed (want info, warning or critical)", a.Severity)
		}
		a.Message = str("message", true)
		a.Device = str("device", false)
	case ActEmit:
		a.Measurement = str("measurement", true)
		if a.Measurement != "" && !payload.ValidIdent(a.Measurement) {
			d.errorf(m["measurement"], p+".measurement", "%q is not a measurement name", a.Measurement)
		}
		a.EventKind = str("kind", false)
		if a.EventKind == "" {
			a.EventKind = "event"
		} else if a.EventKind != "event" && a.EventKind != "telemetry" {
			d.errorf(m["kind"], p+".kind", "%q is not allowed (want event or telemetry)", a.EventKind)
		}
		if v := m["tags"]; v != nil {
			a.Tags = map[string]string{}
			for k, tv := range d.fields(v, p+".tags", nil) {
				a.Tags[k], _ = d.str(tv, p+".tags."+k)
			}
		}
		if v := m["fields"]; v == nil {
			d.errorf(n, p+".fields", "required key is missing: a record needs at least one field")
		} else {
			a.FieldVals = map[string]any{}
			for k, fv := range d.fields(v, p+".fields", nil) {
				if !payload.ValidIdent(k) {
					d.errorf(fv, p+".fields."+k, "%q is not a field name", k)
				}
				a.FieldVals[k] = d.scalar(fv, p+".fields."+k)
			}
			if len(a.FieldVals) == 0 {
				d.errorf(v, p+".fields", "a record needs at least one field")
			}
		}
	case ActWrite, ActHold:
		a.Device = str("device", true)
		a.Point = str("point", true)
		if v := m["value"]; v == nil {
			d.errorf(n, p+".value", "required key is missing")
		} else {
			a.Value = d.scalar(v, p+".value")
		}
	case ActPulse:
		a.Device = str("device", true)
		a.Point = str("point", true)
		a.On, a.Off = true, false
		if v := m["on"]; v != nil {
			a.On = d.scalar(v, p+".on")
		}
		if v := m["off"]; v != nil {
			a.Off = d.scalar(v, p+".off")
		}
		if v := m["for"]; v == nil {
			d.errorf(n, p+".for", "required key is missing (how long the output stays on, e.g. for: 3s)")
		} else {
			a.For = d.duration(v, p+".for", 10*time.Millisecond, time.Hour)
		}
	case ActCommand:
		a.Name = str("name", true)
		if v := m["args"]; v != nil {
			a.Args = map[string]string{}
			for k, av := range d.fields(v, p+".args", nil) {
				a.Args[k], _ = d.str(av, p+".args."+k)
			}
		}
	case ActSet:
		a.Name = str("name", true)
		if a.Name != "" && !payload.ValidDeviceID(a.Name) {
			d.errorf(m["name"], p+".name", "%q is not a virtual value name (a-z, 0-9, _, . and -)", a.Name)
		}
		if v := m["value"]; v == nil {
			d.errorf(n, p+".value", "required key is missing")
		} else {
			a.Value = d.scalar(v, p+".value")
		}
	}
}

// scalar returns a YAML scalar as bool, int64, float64 or string.
func (d *decoder) scalar(n *yaml.Node, p string) any {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, p, "expected a value (bool, number or text), got %s", describe(n))
		return nil
	}
	switch n.Tag {
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
		d.errorf(n, p, "integer %s is out of range", n.Value)
		return nil
	case "!!float":
		f, err := strconv.ParseFloat(n.Value, 64)
		if err == nil {
			return f
		}
		var v float64
		if n.Decode(&v) == nil {
			return v
		}
	}
	if len(n.Value) > maxExpr {
		d.errorf(n, p, "text is %d bytes, longer than %d", len(n.Value), maxExpr)
		return nil
	}
	return n.Value
}

func (d *decoder) str(n *yaml.Node, p string) (string, bool) {
	if n == nil {
		d.errorf(n, p, "expected a string, got nothing")
		return "", false
	}
	yx := &yamlx.Decoder{File: d.file}
	v, ok := yx.Str(n, p)
	d.take(yx)
	return v, ok
}

func (d *decoder) strList(n *yaml.Node, p string) []string {
	r := resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.str(r, p)
		if !ok {
			return nil
		}
		return []string{s}
	}
	if r == nil || r.Kind != yaml.SequenceNode {
		d.errorf(n, p, "expected a name or a list of names, got %s", describe(r))
		return nil
	}
	var out []string
	for i, it := range r.Content {
		if s, ok := d.str(it, fmt.Sprintf("%s[%d]", p, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// boolean reads true or false; a mistake is reported and reads as true
// (the default of enabled).
func (d *decoder) boolean(n *yaml.Node, p string) bool {
	yx := &yamlx.Decoder{File: d.file}
	v, ok := yx.Bool(n, p)
	d.take(yx)
	return v || !ok
}

func (d *decoder) duration(n *yaml.Node, p string, lo, hi time.Duration) time.Duration {
	yx := &yamlx.Decoder{File: d.file}
	v, _ := yx.Duration(n, p, lo, hi)
	d.take(yx)
	return v
}

var (
	resolve  = yamlx.Resolve
	isNull   = yamlx.IsNull
	describe = yamlx.Describe
	join     = yamlx.Join
)

func contains(list []string, s string) bool { return slices.Contains(list, s) }
