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
	"time"

	"github.com/luling-edge/luling/internal/yamlx"
	"gopkg.in/yaml.v3"
)

const repeatHint = "use {n}, {n:03} (zero-padded to 3 digits) or {n+32} / {n-32:03} inside a repeat block"

var placeholderRe = regexp.MustCompile(`^n([+-][0-9]{1,9})?(?::0([0-9]{1,2}))?$`)

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
		m := placeholderRe.FindStringSubmatch(inner)
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

func (d *decoder) devices(root *yamlx.Map, c *Config) []Device {
	items, _ := d.Seq(root.Get("devices"), "devices", "each device is an entry starting with - id: ...")
	buses := map[string]Bus{}
	var busNames []string
	for _, b := range c.Buses {
		if b.Name != "" {
			buses[b.Name] = b
			busNames = append(busNames, b.Name)
		}
	}
	profiles := d.knownProfiles(c.ProfilesDir, root.Get("profiles_dir"))
	ids := map[string]int{}
	units := map[string]map[int]seen{}
	var out []Device

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
		base := Device{Poll: DefaultPoll, MaxSilence: c.Pipeline.MaxSilence, Line: yamlx.Resolve(it).Line}

		from, to, repeated, probe := int64(0), int64(0), false, false
		if rn := m.Get("repeat"); rn != nil {
			var ok bool
			if from, to, ok = d.repeat(rn, p+".repeat"); !ok {
				// Reported; check the entry's other keys once, for n=1,
				// without adding a device.
				from, to, probe = 1, 1, true
			}
			repeated = true
		}

		// Keys without placeholders, decoded once.
		var rule DriverRule
		var hasRule bool
		if n := m.Get("driver"); n == nil {
			d.Missing(m, "driver", "e.g. driver: modbus")
		} else if s, ok := d.Str(n, p+".driver"); ok {
			if !d.opts.drivers.has(s) {
				d.Errorf(n, p+".driver", yamlx.Suggest(s, d.opts.drivers.list(), "known drivers"), "unknown driver %q", s)
			} else {
				base.Driver = s
				rule, hasRule = d.opts.rules[s]
			}
		}
		busNode := m.Get("bus")
		if busNode != nil {
			if s, ok := d.Str(busNode, p+".bus"); ok {
				if _, def := buses[s]; def {
					base.Bus = s
				} else {
					hint := "define it under buses:"
					if len(busNames) > 0 {
						hint = yamlx.Suggest(s, busNames, "defined buses")
					}
					d.Errorf(busNode, p+".bus", hint, "undefined bus %q", s)
					busNode = nil // reported; skip unit checks
				}
			} else {
				busNode = nil
			}
		} else if hasRule && rule.Bus {
			hint := "add bus: NAME"
			if len(busNames) > 0 {
				hint = "add bus: one of " + strings.Join(busNames, ", ")
			}
			d.Errorf(m.Node, p+".bus", hint, "driver %s needs a bus", base.Driver)
		}
		if n := m.Get("profile"); n != nil {
			if s, ok := d.Str(n, p+".profile"); ok {
				if !profiles.has(s) {
					d.Errorf(n, p+".profile", yamlx.Suggest(s, profiles.list(), "known profiles"), "unknown profile %q", s)
				}
				base.Profile = s
			}
		} else if hasRule && rule.Profile {
			hint := "add profile: NAME"
			if l := profiles.list(); len(l) > 0 {
				hint = "known profiles: " + strings.Join(l, ", ")
			}
			d.Errorf(m.Node, p+".profile", hint, "driver %s needs a profile", base.Driver)
		}
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
		base.Deadband = d.deadband(m.Get("deadband"), p+".deadband")
		if n := m.Get("options"); n != nil {
			base.Options = d.options(n, p+".options", rule.Options)
		}
		tags := d.tagTemplates(m.Get("tags"), p+".tags")

		// Keys with placeholders, once per device.
		idNode := m.Get("id")
		var idT template
		if idNode == nil {
			d.Missing(m, "id", "e.g. id: bay-001")
		} else if s, ok := d.Str(idNode, p+".id"); ok {
			idT = template{Node: idNode, path: p + ".id", text: s}
			if repeated && !strings.Contains(s, "{") {
				d.Errorf(idNode, p+".id", "e.g. id: bay-{n:03}", "a repeated device's id needs a placeholder so that every device gets its own id")
				continue
			}
		}
		unitNode := m.Get("unit")
		if !repeated {
			from, to = 0, 0
		}
		if int64(len(out))+(to-from+1) > maxDevices {
			d.Errorf(m.Node, p, "", "more than %d devices in one file", maxDevices)
			break
		}
		for n := from; n <= to; n++ {
			dev := base
			dev.Deadband = maps.Clone(base.Deadband)
			dev.Options = maps.Clone(base.Options)
			okID := false
			if idT.Node != nil {
				if id, ok := d.at(idT, n, repeated); ok {
					dev.ID = id
					suffix := ""
					if repeated {
						suffix = fmt.Sprintf(" (n=%d)", n)
					}
					switch {
					case !deviceIDRe.MatchString(id):
						d.Errorf(idNode, p+".id", "start with a-z or 0-9, then a-z, 0-9, _, . or -; at most 64", "%q%s is not a valid device id", id, suffix)
					case ids[id] != 0:
						d.Errorf(idNode, p+".id", "", "duplicate device id %q%s; first defined at line %d", id, suffix, ids[id])
					case !probe:
						ids[id] = idNode.Line
						okID = true
					}
				}
			}
			dev.Tags = map[string]string{}
			for _, t := range tags {
				if v, ok := d.at(t.value, n, repeated); ok {
					if v == "" {
						d.Errorf(t.value.Node, t.value.path, "", "tag value is empty")
					}
					dev.Tags[t.name] = v
				}
			}
			if unitNode != nil {
				dev.Unit = d.unit(unitNode, p+".unit", n, repeated, dev, rule, hasRule)
			} else if hasRule && rule.Bus && base.Bus != "" {
				d.Errorf(m.Node, p+".unit", fmt.Sprintf("the device's address on %s, %d..%d", base.Bus, rule.UnitMin, rule.UnitMax), "driver %s needs a unit", base.Driver)
			}
			if unitNode != nil && busNode != nil && base.Bus != "" && dev.Unit >= 0 && okID {
				onBus := units[base.Bus]
				if onBus == nil {
					onBus = map[int]seen{}
					units[base.Bus] = onBus
				}
				if first, dup := onBus[dev.Unit]; dup {
					hint := "every device on one bus needs its own unit"
					if repeated && yamlx.Resolve(unitNode).Tag == "!!int" {
						hint = `in a repeat block write unit: "{n}"`
					}
					d.Errorf(unitNode, p+".unit", hint, "unit %d of %s is already used on bus %s by %s (line %d)", dev.Unit, dev.ID, base.Bus, first.id, first.line)
				} else {
					onBus[dev.Unit] = seen{id: dev.ID, line: unitNode.Line}
				}
			}
			if !probe {
				out = append(out, dev)
			}
		}
	}
	return out
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
		if !fieldRe.MatchString(k) {
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
		if !fieldRe.MatchString(k) {
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
func (d *decoder) options(n *yaml.Node, path string, schema yamlx.Schema) map[string]any {
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
