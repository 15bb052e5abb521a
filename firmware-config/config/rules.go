package config

import (
	"fmt"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

// Rule is one entry of the rules: list, kept as written. The loader checks
// that each entry is a mapping with a valid, unique name; package
// gateway/rules decodes and compiles the rest (rules.FromConfig), with
// errors that carry the same file and lines. docs/rules.md describes the
// entries.
type Rule struct {
	Name string
	Line int // line of the entry in the file
	Col  int
	Node *yaml.Node // the entry's mapping
}

// maxRules bounds the rules of one file.
const maxRules = 2000

func (d *decoder) rules(root *yamlx.Map) []Rule {
	const hint = "each rule is an entry starting with - name: ...; see docs/rules.md"
	items, _ := d.Seq(root.Get("rules"), "rules", hint)
	if len(items) > maxRules {
		d.Errorf(root.Get("rules"), "rules", "", "%d rules, more than the %d one gateway may hold", len(items), maxRules)
		return nil
	}
	var out []Rule
	names := map[string]int{}
	for i, it := range items {
		p := fmt.Sprintf("rules[%d]", i)
		n := yamlx.Resolve(it)
		if n == nil || n.Kind != yaml.MappingNode {
			d.Errorf(it, p, hint, "expected a mapping, got %s", yamlx.Describe(n))
			continue
		}
		// Keys are checked by package rules; only the name is read here.
		m := d.Map(n, p, nil)
		r := Rule{Line: n.Line, Col: n.Column, Node: n}
		nn := m.Get("name")
		if nn == nil {
			d.Missing(m, "name", "e.g. name: bay-led")
			continue
		}
		s, ok := d.Str(nn, p+".name")
		if !ok {
			continue
		}
		if !payload.ValidDeviceID(s) {
			d.Errorf(nn, p+".name", "1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit", "%q is not a valid rule name", s)
			continue
		}
		if first, dup := names[s]; dup {
			d.Errorf(nn, p+".name", "", "duplicate rule name %q; first defined at line %d", s, first)
			continue
		}
		names[s] = n.Line
		r.Name = s
		out = append(out, r)
	}
	return out
}
