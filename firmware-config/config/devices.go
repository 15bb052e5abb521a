package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

const repeatHint = "use {n}, {n:03} (zero-padded to 3 digits) or {n+32} / {n-32:03} inside a repeat block"

// placeholderRe is compiled when a config first uses a placeholder.
var placeholderRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^n([+-][0-9]{1,9})?(?::0([0-9]{1,2}))?$`)
})

// expand replaces the placeholders {n}, {n:0W}, {n+K} and {n-K:0W} in s.
func expand(s string, n int64) (string, error) {
	if !strings.ContainsAny(s, "{}") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexAny(s, "{}")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if s[i] == '}' {
			return "", fmt.Errorf("unmatched } in %q", s)
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed placeholder %q", s[i:])
		}
		inner := s[i+1 : i+j]
		m := placeholderRe().FindStringSubmatch(inner)
		if m == nil {
			return "", fmt.Errorf("bad placeholder %q", s[i:i+j+1])
		}
		v := n
		if m[1] != "" {
			off, _ := strconv.ParseInt(m[1], 10, 64)
			v += off
		}
		txt := strconv.FormatInt(v, 10)
		if m[2] != "" {
			w, _ := strconv.Atoi(m[2])
			neg := v < 0
			digits := strings.TrimPrefix(txt, "-")
			if len(digits) < w {
				digits = strings.Repeat("0", w-len(digits)) + digits
			}
			if neg {
				digits = "-" + digits
			}
			txt = digits
		}
		b.WriteString(txt)
		s = s[i+j+1:]
	}
}

// template is a string value that may hold placeholders.
type template struct {
	Node *yaml.Node
	path string
	text string
}

// at expands the template for n (or checks that a single device's value
// has no placeholder). It reports an error and returns false when bad.
func (d *decoder) at(t template, n int64, repeated bool) (string, bool) {
	if !repeated {
		if strings.Contains(t.text, "{n") {
			d.Errorf(t.Node, t.path, "add repeat: {from: 1, to: 8} to this device, or remove the placeholder", "placeholder outside a repeat block")
			return "", false
		}
		return t.text, true
	}
	v, err := expand(t.text, n)
	if err != nil {
		d.Errorf(t.Node, t.path, repeatHint, "%v", err)
		return "", false
	}
	return v, true
}

type seen struct {
	id   string
	line int
}

// deviceSet is what the entries of devices: share while they are decoded:
// the buses and profiles they may name, and the ids and units taken.
type deviceSet struct {
	buses    map[string]Bus
	busNames []string
	profiles *names
	ids      map[string]int          // id → line
	units    map[string]map[int]seen // bus → unit → device
	out      []Device
}

// entry is one entry of devices:, a device or a repeat block of them.
type entry struct {
	p        string // path, devices[i]
	m        *yamlx.Map
	base     Device // what every device of the entry shares
	rule     DriverRule
	hasRule  bool
	busNode  *yaml.Node // nil when absent or reported
	repeated bool
	probe    bool // a bad repeat block: check its keys once, add no device
	from, to int64
	tags     []tagTemplate
}

func (d *decoder) devices(root *yamlx.Map, c *Config) []Device {
	items, _ := d.Seq(root.Get("devices"), "devices", "each device is an entry starting with - id: ...")
	s := &deviceSet{buses: map[string]Bus{}, ids: map[string]int{}, units: map[string]map[int]seen{}}
	for _, b := range c.Buses {
		if b.Name != "" {
			s.buses[b.Name] = b
			s.busNames = append(s.busNames, b.Name)
		}
	}
	s.profiles = d.knownProfiles(c.ProfilesDir, root.Get("profiles_dir"))
	for i, it := range items {
		p := fmt.Sprintf("devices[%d]", i)
		if yamlx.IsNull(yamlx.Resolve(it)) {
			d.Errorf(it, p, "remove the lone -, or write the device's keys under it", "empty entry")
			continue
		}
		m := d.Map(it, p, deviceKeys)
		if m == nil {
			continue
		}
		e := &entry{p: p, m: m, base: Device{Poll: DefaultPoll, MaxSilence: c.Pipeline.MaxSilence, Line: yamlx.Resolve(it).Line}}
		if rn := m.Get("repeat"); rn != nil {
			var ok bool
			if e.from, e.to, ok = d.repeat(rn, p+".repeat"); !ok {
				// Reported; check the entry's other keys once, for n=1,
				// without adding a device.
				e.from, e.to, e.probe = 1, 1, true
			}
			e.repeated = true
		}
		d.placement(s, e)
		d.timing(e)
		e.base.Deadband = d.deadband(m.Get("deadband"), p+".deadband")
		if n := m.Get("options"); n != nil {
			e.base.Options = d.options(n, p+".options", e.rule.Options)
		}
		e.tags = d.tagTemplates(m.Get("tags"), p+".tags")
		if !d.expandEntry(s, e) {
			break
		}
	}
	return s.out
}

// placement decodes the keys that say what and where the device is
// (driver, bus, profile), without placeholders, once per entry.
func (d *decoder) placement(s *deviceSet, e *entry) {
	m, p := e.m, e.p
	if n := m.Get("driver"); n == nil {
		d.Missing(m, "driver", "e.g. driver: modbus")
	} else if name, ok := d.Str(n, p+".driver"); ok {
		if !d.opts.drivers.has(name) {
			d.Errorf(n, p+".driver", yamlx.Suggest(name, d.opts.drivers.list(), "known drivers"), "unknown driver %q", name)
		} else {
			e.base.Driver = name
			e.rule, e.hasRule = d.opts.rules[name]
		}
	}
	e.busNode = m.Get("bus")
	if e.busNode != nil {
		if name, ok := d.Str(e.busNode, p+".bus"); ok {
			if _, def := s.buses[name]; def {
				e.base.Bus = name
			} else {
				hint := "define it under buses:"
				if len(s.busNames) > 0 {
					hint = yamlx.Suggest(name, s.busNames, "defined buses")
				}
				d.Errorf(e.busNode, p+".bus", hint, "undefined bus %q", name)
				e.busNode = nil // reported; skip unit checks
			}
		} else {
			e.busNode = nil
		}
	} else if e.hasRule && e.rule.Bus {
		hint := "add bus: NAME"
		if len(s.busNames) > 0 {
			hint = "add bus: one of " + strings.Join(s.busNames, ", ")
		}
		d.Errorf(m.Node, p+".bus", hint, "driver %s needs a bus", e.base.Driver)
	}
	if n := m.Get("profile"); n != nil {
		if name, ok := d.Str(n, p+".profile"); ok {
			if !s.profiles.has(name) {
				d.Errorf(n, p+".profile", yamlx.Suggest(name, s.profiles.list(), "known profiles"), "unknown profile %q", name)
			}
			e.base.Profile = name
		}
	} else if e.hasRule && e.rule.Profile {
		hint := "add profile: NAME"
		if l := s.profiles.list(); len(l) > 0 {
			hint = "known profiles: " + strings.Join(l, ", ")
		}
		d.Errorf(m.Node, p+".profile", hint, "driver %s needs a profile", e.base.Driver)
	}
}

// timing decodes poll and max_silence.
func (d *decoder) timing(e *entry) {
	m, p, base := e.m, e.p, &e.base
	pollNode, pollOK := m.Get("poll"), true
	if pollNode != nil {
		var v time.Duration
		if v, pollOK = d.Duration(pollNode, p+".poll", 50*time.Millisecond, 24*time.Hour); pollOK {
			base.Poll = v
		}
	}
	if n := m.Get("max_silence"); n != nil {
		if v, ok := d.Duration(n, p+".max_silence", time.Second, 7*24*time.Hour); ok {
			base.MaxSilence = v
			if pollOK && v < base.Poll {
				d.Errorf(n, p+".max_silence", "max_silence must be at least the poll interval", "max_silence %s is shorter than poll %s", yamlx.FmtDur(v), yamlx.FmtDur(base.Poll))
			}
		}
	} else if pollNode != nil && pollOK && base.Poll > base.MaxSilence {
		d.Errorf(pollNode, p+".poll", "set max_silence on this device too", "poll %s is longer than max_silence %s", yamlx.FmtDur(base.Poll), yamlx.FmtDur(base.MaxSilence))
	}
}

// expandEntry decodes the keys with placeholders (id, tags, unit) once per
// device of the entry and adds the devices. It returns false when the
// file holds too many devices to go on.
func (d *decoder) expandEntry(s *deviceSet, e *entry) bool {
	m, p := e.m, e.p
	idNode := m.Get("id")
	var idT template
	if idNode == nil {
		d.Missing(m, "id", "e.g. id: bay-001")
	} else if id, ok := d.Str(idNode, p+".id"); ok {
		idT = template{Node: idNode, path: p + ".id", text: id}
		if e.repeated && !strings.Contains(id, "{") {
			d.Errorf(idNode, p+".id", "e.g. id: bay-{n:03}", "a repeated device's id needs a placeholder so that every device gets its own id")
			return true
		}
	}
	from, to := e.from, e.to
	if !e.repeated {
		from, to = 0, 0
	}
	if int64(len(s.out))+(to-from+1) > maxDevices {
		d.Errorf(m.Node, p, "", "more than %d devices in one file", maxDevices)
		return false
	}
	for n := from; n <= to; n++ {
		dev := e.base
		dev.Deadband = maps.Clone(e.base.Deadband)
		dev.Options = maps.Clone(e.base.Options)
		okID := idT.Node != nil && d.deviceID(s, e, idT, n, &dev)
		dev.Tags = map[string]string{}
		for _, t := range e.tags {
			if v, ok := d.at(t.value, n, e.repeated); ok {
				if v == "" {
					d.Errorf(t.value.Node, t.value.path, "", "tag value is empty")
				}
				dev.Tags[t.name] = v
			}
		}
		d.deviceUnit(s, e, n, &dev, okID)
		if !e.probe {
			s.out = append(s.out, dev)
		}
	}
	return true
}

// deviceID expands the id for device n of the entry and checks it is
// valid and unused; it reports whether the device now holds the id.
func (d *decoder) deviceID(s *deviceSet, e *entry, idT template, n int64, dev *Device) bool {
	id, ok := d.at(idT, n, e.repeated)
	if !ok {
		return false
	}
	dev.ID = id
	suffix := ""
	if e.repeated {
		suffix = fmt.Sprintf(" (n=%d)", n)
	}
	switch {
	case !payload.ValidDeviceID(id):
		d.Errorf(idT.Node, idT.path, "start with a-z or 0-9, then a-z, 0-9, _, . or -; at most 64", "%q%s is not a valid device id", id, suffix)
	case s.ids[id] != 0:
		d.Errorf(idT.Node, idT.path, "", "duplicate device id %q%s; first defined at line %d", id, suffix, s.ids[id])
	case !e.probe:
		s.ids[id] = idT.Node.Line
		return true
	}
	return false
}

// deviceUnit reads the unit of device n of the entry and checks that it
// is free on its bus.
func (d *decoder) deviceUnit(s *deviceSet, e *entry, n int64, dev *Device, okID bool) {
	unitNode, p := e.m.Get("unit"), e.p
	if unitNode == nil {
		if e.hasRule && e.rule.Bus && dev.Bus != "" {
			d.Errorf(e.m.Node, p+".unit", fmt.Sprintf("the device's address on %s, %d..%d", dev.Bus, e.rule.UnitMin, e.rule.UnitMax), "driver %s needs a unit", dev.Driver)
		}
		return
	}
	dev.Unit = d.unit(unitNode, p+".unit", n, e.repeated, *dev, e.rule, e.hasRule)
	if e.busNode == nil || dev.Bus == "" || dev.Unit < 0 || !okID {
		return
	}
	onBus := s.units[dev.Bus]
	if onBus == nil {
		onBus = map[int]seen{}
		s.units[dev.Bus] = onBus
	}
	if first, dup := onBus[dev.Unit]; dup {
		hint := "every device on one bus needs its own unit"
		if e.repeated && yamlx.Resolve(unitNode).Tag == "!!int" {
			hint = `in a repeat block write unit: "{n}"`
		}
		d.Errorf(unitNode, p+".unit", hint, "unit %d of %s is already used on bus %s by %s (line %d)", dev.Unit, dev.ID, dev.Bus, first.id, first.line)
	} else {
		onBus[dev.Unit] = seen{id: dev.ID, line: unitNode.Line}
	}
}

func (d *decoder) repeat(n *yaml.Node, path string) (from, to int64, ok bool) {
	m := d.Map(n, path, repeatKeys)
	if m == nil {
		return 0, 0, false
	}
	const hint = "e.g. repeat: {from: 1, to: 32}"
	fn, tn := m.Get("from"), m.Get("to")
	if fn == nil {
		d.Missing(m, "from", hint)
	}
	if tn == nil {
		d.Missing(m, "to", hint)
	}
	if fn == nil || tn == nil {
		return 0, 0, false
	}
	from, ok1 := d.Int(fn, path+".from", 0, 1_000_000)
	to, ok2 := d.Int(tn, path+".to", 0, 1_000_000)
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	if to < from {
		d.Errorf(tn, path+".to", "", "to %d is less than from %d", to, from)
		return 0, 0, false
	}
	if to-from+1 > maxRepeat {
		d.Errorf(tn, path+".to", "", "repeat makes %d devices; at most %d", to-from+1, maxRepeat)
		return 0, 0, false
	}
	return from, to, true
}

// unit reads a device's unit: an integer, or in a repeat block a string
// with placeholders ("{n}", "{n-32}").
func (d *decoder) unit(n *yaml.Node, path string, k int64, repeated bool, dev Device, rule DriverRule, hasRule bool) int {
	n = yamlx.Resolve(n)
	var v int64
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!int":
		x, ok := d.Int(n, path, 0, 1<<31)
		if !ok {
			return -1
		}
		v = x
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && repeated:
		s, ok := d.at(template{Node: n, path: path, text: n.Value}, k, true)
		if !ok {
			return -1
		}
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			d.Errorf(n, path, `an integer, or "{n}" / "{n+K}" in a repeat block`, "unit %q (n=%d) is not an integer", s, k)
			return -1
		}
		v = x
	default:
		hint := `an integer, or "{n}" / "{n+K}" in a repeat block`
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "{n") {
			hint = "add repeat: {from: 1, to: 8} to this device, or write the unit as a number"
		}
		d.Errorf(n, path, hint, "expected an integer, got %s", yamlx.Describe(n))
		return -1
	}
	suffix := ""
	if repeated {
		suffix = fmt.Sprintf(" of %s (n=%d)", dev.ID, k)
	}
	if dev.Bus == "" {
		if rule.Bus || !hasRule {
			// A missing or undefined bus is reported at the bus key.
			return int(v)
		}
	}
	lo, hi := int64(0), int64(1<<31)
	if hasRule && rule.Bus {
		lo, hi = int64(rule.UnitMin), int64(rule.UnitMax)
	}
	if v < lo || v > hi {
		hint := ""
		if hasRule && rule.Bus {
			hint = fmt.Sprintf("driver %s accepts units %d..%d", dev.Driver, lo, hi)
		}
		d.Errorf(n, path, hint, "unit %d%s is out of range", v, suffix)
		return -1
	}
	return int(v)
}

func (d *decoder) deadband(n *yaml.Node, path string) map[string]float64 {
	m := d.Map(n, path, nil)
	if m == nil || len(m.Vals) == 0 {
		return nil
	}
	out := map[string]float64{}
	for _, k := range m.Ordered() {
		p := path + "." + k
		if !payload.ValidIdent(k) {
			d.Errorf(m.Keys[k], p, "letters, digits and _, not starting with a digit", "%q is not a field name", k)
			continue
		}
		vn := m.Get(k)
		if vn == nil {
			d.Errorf(m.Keys[k], p, "e.g. distance_cm: 5", "expected a number, got null")
			continue
		}
		if v, ok := d.Number(vn, p); ok {
			if v < 0 {
				d.Errorf(vn, p, "", "deadband %g is negative", v)
				continue
			}
			out[k] = v
		}
	}
	return out
}

type tagTemplate struct {
	name  string
	value template
}

func (d *decoder) tagTemplates(n *yaml.Node, path string) []tagTemplate {
	m := d.Map(n, path, nil)
	if m == nil {
		return nil
	}
	var out []tagTemplate
	for _, k := range m.Ordered() {
		p := path + "." + k
		if !payload.ValidIdent(k) {
			d.Errorf(m.Keys[k], p, "letters, digits and _, not starting with a digit", "%q is not a tag name", k)
			continue
		}
		if slices.Contains(reservedTags, k) {
			d.Errorf(m.Keys[k], p, "the gateway sets site, gateway and device itself", "tag %q is reserved", k)
			continue
		}
		vn := yamlx.Resolve(m.Vals[k])
		if yamlx.IsNull(vn) {
			d.Errorf(m.Keys[k], p, `write a value, e.g. bay: "001"`, "tag value is empty")
			continue
		}
		s, ok := d.Str(vn, p)
		if !ok {
			continue
		}
		out = append(out, tagTemplate{name: k, value: template{Node: vn, path: p, text: s}})
	}
	return out
}

// options decodes a device's options, checked against the driver's schema
// when it has one.
func (d *decoder) options(n *yaml.Node, path string, schema schema.Schema) map[string]any {
	var m *yamlx.Map
	if schema != nil {
		m = d.Check(n, path, schema)
	} else {
		m = d.Map(n, path, nil)
	}
	if m == nil {
		return nil
	}
	var v map[string]any
	if err := yamlx.Resolve(n).Decode(&v); err != nil {
		d.Errorf(n, path, "", "cannot read options: %v", err)
		return nil
	}
	return v
}

// sortedNodes returns a mapping's keys in file order.
func sortedNodes(m *yamlx.Map) []string {
	out := make([]string, 0, len(m.Keys))
	for k := range m.Keys {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && before(m.Keys[out[j]], m.Keys[out[j-1]]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func before(a, b *yaml.Node) bool {
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Column < b.Column
}

// knownProfiles returns the profiles a device may use: those passed to
// KnownProfiles and those in profiles_dir. It returns nil (every name is
// accepted) without KnownProfiles, and when profiles_dir is set while file
// checks are skipped.
func (d *decoder) knownProfiles(dir string, at *yaml.Node) *names {
	if d.opts.profiles == nil {
		return nil
	}
	if dir == "" {
		return d.opts.profiles
	}
	if d.opts.skipFiles {
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return d.opts.profiles // reported at profiles_dir
	}
	list := d.opts.profilesIn
	if list == nil {
		list = profileFiles
	}
	more, err := list(dir)
	if err != nil {
		d.Errorf(at, "profiles_dir", "fix the profiles in that folder", "cannot load profiles from %s: %v", dir, err)
	}
	out := &names{set: maps.Clone(d.opts.profiles.set), funcs: d.opts.profiles.funcs}
	for _, n := range more {
		out.set[n] = true
	}
	return out
}

// profileFiles lists the base names of the *.yaml and *.yml files in dir.
func profileFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			out = append(out, strings.TrimSuffix(e.Name(), ext))
		}
	}
	return out, nil
}
