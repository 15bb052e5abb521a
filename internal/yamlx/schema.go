package yamlx

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is the type of a schema field's value.
type Kind string

// Kinds of values.
const (
	String   Kind = "string"
	Bool     Kind = "bool"
	Int      Kind = "integer"
	Number   Kind = "number"
	Duration Kind = "duration"
	Mapping  Kind = "mapping" // any mapping, checked by its user (a plugin's own config)
)

// Field describes one key of a mapping: how a component (a driver's
// options) describes what it accepts, so that a loader checks it with
// positions and docs list it.
type Field struct {
	Key      string
	Kind     Kind
	Required bool
	Doc      string // one line for docs/config.md
	Default  string // as written in YAML, "" when there is none
	// Integers: accepted range (both 0: any int32).
	Min, Max int64
	// Durations: accepted range (both 0: 1ms..24h).
	MinDur, MaxDur time.Duration
	// Strings: the accepted values, when they are a fixed set.
	OneOf []string
	// Strings: a check of the text beyond its type (a key's hex digits),
	// whose error is the message.
	Valid func(string) error
}

// Schema is the keys of a mapping.
type Schema []Field

// Keys lists the schema's keys in order.
func (s Schema) Keys() []string {
	out := make([]string, len(s))
	for i, f := range s {
		out[i] = f.Key
	}
	return out
}

// Field returns the field of key.
func (s Schema) Field(key string) (Field, bool) {
	for _, f := range s {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// Check checks that n is a mapping of the schema's keys, each with a value
// of its kind, and that the required keys are there. A nil schema accepts
// no key. It returns the mapping (nil when n is not one).
func (d *Decoder) Check(n *yaml.Node, path string, s Schema) *Map {
	m := d.Map(n, path, s.Keys())
	if m == nil {
		return nil
	}
	for _, f := range s {
		v := m.Get(f.Key)
		if v == nil {
			if f.Required {
				d.Missing(m, f.Key, f.example())
			}
			continue
		}
		d.value(v, Join(path, f.Key), f)
	}
	return m
}

// example is the hint of a missing key.
func (f Field) example() string {
	switch {
	case f.Default != "":
		return fmt.Sprintf("e.g. %s: %s", f.Key, f.Default)
	case len(f.OneOf) > 0:
		return fmt.Sprintf("%s: one of %s", f.Key, strings.Join(f.OneOf, ", "))
	}
	return f.Doc
}

func (d *Decoder) value(v *yaml.Node, path string, f Field) {
	switch f.Kind {
	case String:
		if len(f.OneOf) > 0 {
			d.OneOf(v, path, f.OneOf)
			return
		}
		if s, ok := d.Str(v, path); ok && f.Valid != nil {
			if err := f.Valid(s); err != nil {
				d.Errorf(v, path, "", "%v", err)
			}
		}
	case Bool:
		d.Bool(v, path)
	case Int:
		lo, hi := f.Min, f.Max
		if lo == 0 && hi == 0 {
			lo, hi = -1<<31, 1<<31-1
		}
		d.Int(v, path, lo, hi)
	case Number:
		d.Number(v, path)
	case Duration:
		lo, hi := f.MinDur, f.MaxDur
		if lo == 0 && hi == 0 {
			lo, hi = time.Millisecond, 24*time.Hour
		}
		d.Duration(v, path, lo, hi)
	case Mapping:
		d.Map(v, path, nil)
	default:
		d.Errorf(v, path, "", "schema: unknown kind %q", f.Kind)
	}
}
