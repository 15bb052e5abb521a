package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the YAML node tree, collecting every error with its position.
type decoder struct {
	file   string
	opts   *options
	errs   []Error
	merges int // merged mappings so far, bounded against alias bombs
}

// maxMerges bounds the mappings merged with <<: in one file.
const maxMerges = 1000

func (d *decoder) errorf(n *yaml.Node, path, hint, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, n.Column
	}
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	d.errs = append(d.errs, Error{File: d.file, Line: line, Col: col, Path: path, Msg: msg, Hint: hint})
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names a node's type and value for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind != yaml.ScalarNode:
		return "a " + n.Tag
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	}
	return fmt.Sprintf("string %q", v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping is a decoded YAML mapping whose keys were checked.
type mapping struct {
	node *yaml.Node // the mapping node, for positions; may be nil when absent
	path string
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

// get returns a key's value, or nil when it is absent or null.
func (m *mapping) get(key string) *yaml.Node {
	if m == nil {
		return nil
	}
	v := m.vals[key]
	if isNull(v) {
		return nil
	}
	return v
}

// has reports whether the key is written, even with a null value.
func (m *mapping) has(key string) bool {
	if m == nil {
		return false
	}
	_, ok := m.vals[key]
	return ok
}

// mapping checks that n is a mapping with only known keys. A nil or null
// n is an empty mapping. It returns nil when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, known []string) *mapping {
	n = resolve(n)
	m := &mapping{node: n, path: path, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	if isNull(n) {
		return m
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "", "expected a mapping of keys, got %s", describe(n))
		return nil
	}
	d.collect(m, n, known, false, 0)
	return m
}

// collect adds n's pairs to m. Merged pairs (<<: *anchor) never override
// keys written in the mapping itself.
func (d *decoder) collect(m *mapping, n *yaml.Node, known []string, merged bool, depth int) {
	if depth > 8 {
		d.errorf(n, m.path, "", "merge keys nested too deeply")
		return
	}
	if merged {
		if d.merges++; d.merges > maxMerges {
			if d.merges == maxMerges+1 {
				d.errorf(n, m.path, "", "more than %d merges (<<:) in one file", maxMerges)
			}
			return
		}
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, m.path, "", "expected a key name, got %s", describe(k))
			continue
		}
		name := k.Value
		p := join(m.path, name)
		if known != nil && !contains(known, name) {
			d.errorf(k, p, suggest(name, known, "known keys"), "unknown key %q", name)
			continue
		}
		if first, dup := m.keys[name]; dup {
			if merged {
				continue
			}
			d.errorf(k, p, "", "key %q is set twice; first at line %d", name, first.Line)
			continue
		}
		m.keys[name] = k
		m.vals[name] = v
	}
	for _, v := range merges {
		v = resolve(v)
		switch {
		case v != nil && v.Kind == yaml.MappingNode:
			d.collect(m, v, known, true, depth+1)
		case v != nil && v.Kind == yaml.SequenceNode:
			for _, x := range v.Content {
				if x = resolve(x); x != nil && x.Kind == yaml.MappingNode {
					d.collect(m, x, known, true, depth+1)
				} else {
					d.errorf(x, m.path, "", "merge key <<: expected a mapping, got %s", describe(x))
				}
			}
		default:
			d.errorf(v, m.path, "", "merge key <<: expected a mapping, got %s", describe(v))
		}
	}
}

// sequence returns the items of a list; nil n is an empty list.
func (d *decoder) sequence(n *yaml.Node, path, hint string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, hint, "expected a list, got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// str returns a scalar's text. Numbers and booleans are taken as written,
// so tag values like 001 keep their zeros.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, path, "", "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		hint := ""
		if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				hint = "write the number without quotes"
			}
		}
		d.errorf(n, path, hint, "expected an integer, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.errorf(n, path, "", "expected an integer, got %s (%v)", describe(n), err)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "", "%d is out of range %d..%d", v, lo, hi)
		return 0, false
	}
	return v, true
}

func (d *decoder) number(n *yaml.Node, path string) (float64, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.errorf(n, path, "", "expected a number, got %s", describe(n))
		return 0, false
	}
	var v float64
	if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.errorf(n, path, "", "expected a finite number, got %s", describe(n))
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.errorf(n, path, "true or false", "expected a boolean, got %s", describe(n))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		d.errorf(n, path, "true or false", "expected a boolean, got %s", describe(n))
		return false, false
	}
	return v, true
}

func (d *decoder) oneOf(n *yaml.Node, path string, allowed []string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !contains(allowed, s) {
		d.errorf(n, path, suggest(s, allowed, "one of"), "%q is not allowed", s)
		return "", false
	}
	return s, true
}

func (d *decoder) duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		hint := "a Go duration such as 200ms, 30s, 5m or 1h30m"
		if n != nil && n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
			hint = fmt.Sprintf("add a unit: %sms or %ss", n.Value, n.Value)
		}
		d.errorf(n, path, hint, "expected a duration, got %s", describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		d.errorf(n, path, "a Go duration such as 200ms, 30s, 5m or 1h30m", "bad duration %q", n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "", "%s is out of range %s..%s", fmtDur(v), fmtDur(lo), fmtDur(hi))
		return 0, false
	}
	return v, true
}

func (d *decoder) size(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = resolve(n)
	const hint = "bytes, or a size such as 512KiB, 64MiB or 1GB"
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		d.errorf(n, path, hint, "expected a size, got %s", describe(n))
		return 0, false
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		d.errorf(n, path, hint, "bad size %q: %v", n.Value, err)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, path, "", "%s is out of range %s..%s", FormatSize(v), FormatSize(lo), FormatSize(hi))
		return 0, false
	}
	return v, true
}

// fmtDur prints a duration without trailing zero units: 5m, 24h, 1h30m.
func fmtDur(v time.Duration) string {
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns "did you mean X?" when a known name is close to s, or
// else lists the known names after label.
func suggest(s string, known []string, label string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if dist := levenshtein(strings.ToLower(s), strings.ToLower(k)); dist < bestD {
			best, bestD = k, dist
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if best != "" && bestD <= limit {
		return fmt.Sprintf("did you mean %s?", best)
	}
	if len(known) == 0 {
		return ""
	}
	list := known
	more := ""
	if len(list) > 12 {
		list, more = list[:12], ", …"
	}
	return label + ": " + strings.Join(list, ", ") + more
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// The helpers below serve other packages that decode parts of the config
// file themselves (rules), so that their messages read like the loader's.

// ResolveNode follows aliases (and unwraps a document node); it returns nil
// for an alias chain that does not end.
func ResolveNode(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return resolve(n)
}

// IsNullNode reports whether n is absent or null.
func IsNullNode(n *yaml.Node) bool { return isNull(n) }

// DescribeNode names a node's type and value for "expected X, got Y" messages.
func DescribeNode(n *yaml.Node) string { return describe(n) }

// JoinPath appends a key to a dotted config path.
func JoinPath(path, key string) string { return join(path, key) }
