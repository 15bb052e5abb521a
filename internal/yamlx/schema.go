package yamlx

import (
	"fmt"
	"strings"
	"time"

	"github.com/luling-edge/luling/internal/schema"
	"gopkg.in/yaml.v3"
)

// Check checks that n is a mapping of the schema's keys, each with a value
// of its kind, and that the required keys are there. A nil schema accepts
// no key. It returns the mapping (nil when n is not one).
func (d *Decoder) Check(n *yaml.Node, path string, s schema.Schema) *Map {
	m := d.Map(n, path, s.Keys())
	if m == nil {
		return nil
	}
	for _, f := range s {
		v := m.Get(f.Key)
		if v == nil {
			if f.Required {
				d.Missing(m, f.Key, example(f))
			}
			continue
		}
		d.value(v, Join(path, f.Key), f)
	}
	return m
}

// example is the hint of a missing key.
func example(f schema.Field) string {
	switch {
	case f.Default != "":
		return fmt.Sprintf("e.g. %s: %s", f.Key, f.Default)
	case len(f.OneOf) > 0:
		return fmt.Sprintf("%s: one of %s", f.Key, strings.Join(f.OneOf, ", "))
	}
	return f.Doc
}

func (d *Decoder) value(v *yaml.Node, path string, f schema.Field) {
	switch f.Kind {
	case schema.String:
		if len(f.OneOf) > 0 {
			d.OneOf(v, path, f.OneOf)
			return
		}
		if s, ok := d.Str(v, path); ok && f.Valid != nil {
			if err := f.Valid(s); err != nil {
				d.Errorf(v, path, "", "%v", err)
			}
		}
	case schema.Bool:
		d.Bool(v, path)
	case schema.Int:
		lo, hi := f.Min, f.Max
		if lo == 0 && hi == 0 {
			lo, hi = -1<<31, 1<<31-1
		}
		d.Int(v, path, lo, hi)
	case schema.Number:
		d.Number(v, path)
	case schema.Duration:
		lo, hi := f.MinDur, f.MaxDur
		if lo == 0 && hi == 0 {
			lo, hi = time.Millisecond, 24*time.Hour
		}
		d.Duration(v, path, lo, hi)
	case schema.Mapping:
		d.Map(v, path, nil)
	default:
		d.Errorf(v, path, "", "schema: unknown kind %q", f.Kind)
	}
}
