// Package schema is how a component describes the keys it accepts (a
// driver its options:): each key's kind, range, allowed values, default and
// one line of docs. The config loader checks a file against it with
// positions (internal/yamlx), drivers check what they are handed
// (drivers.CheckOptions) and docs/config.md is generated from it. It
// imports nothing but the standard library, so that a plugin binary that
// links the drivers package takes on no YAML parser.
package schema

import "time"

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
	// Strings: the value names a GPIO line (chip:line or a line name),
	// which only the board (or a GPIO simulator) can check.
	GPIO bool
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
