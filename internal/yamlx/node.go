package yamlx

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Resolve follows aliases and unwraps a document node; it returns nil for
// an alias chain that does not end.
func Resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// IsNull reports whether n is absent or null.
func IsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Describe names a node's type and value for "expected X, got Y" messages.
func Describe(n *yaml.Node) string {
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

// Join appends a key to a dotted path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Map is a decoded YAML mapping whose keys were checked.
type Map struct {
	Node *yaml.Node // the mapping node, for positions; nil when absent
	Path string
	Vals map[string]*yaml.Node // value by key
	Keys map[string]*yaml.Node // key node by key, for positions
}

// Get returns a key's value, or nil when it is absent or null.
func (m *Map) Get(key string) *yaml.Node {
	if m == nil {
		return nil
	}
	v := m.Vals[key]
	if IsNull(v) {
		return nil
	}
	return v
}

// Has reports whether the key is written, even with a null value.
func (m *Map) Has(key string) bool {
	if m == nil {
		return false
	}
	_, ok := m.Vals[key]
	return ok
}

// Ordered returns the mapping's keys in file order.
func (m *Map) Ordered() []string {
	out := make([]string, 0, len(m.Keys))
	for k := range m.Keys {
		out = append(out, k)
	}
	before := func(a, b *yaml.Node) bool {
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && before(m.Keys[out[j]], m.Keys[out[j-1]]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// FmtDur prints a duration without trailing zero units: 5m, 24h, 1h30m.
func FmtDur(v time.Duration) string {
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
