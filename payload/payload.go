// Package payload defines what a gateway says on the wire: records (one
// observation or event of a device), the batches that carry them over MQTT,
// and the version 1 JSON encoding of both.
//
// A Record is the unit everything else moves: a driver produces it, the
// pipeline stamps and filters it, the outbox stores it inside a sealed
// Message, the uplink publishes that message, and the cloud turns each record
// into one InfluxDB point. The measurement names, tags and field types follow
// the InfluxDB contract in docs/influxdb-schema.md; Schema lists the
// measurements the contract fixes.
//
// The JSON encoding is documented in docs/mqtt-payloads.md. Numbers keep their
// type across the wire: a float is always written with a decimal point or an
// exponent, an integer never is, so 12.0 and 12 arrive as float and int.
package payload

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Version is the payload schema version carried in every batch ("v").
const Version = 1

// Kind says which stream a message belongs to. It selects the MQTT topic and
// the outbox's drop policy: telemetry may be dropped oldest-first when the
// outbox is full, events never are.
type Kind uint8

const (
	Telemetry Kind = 1
	Event     Kind = 2
)

func (k Kind) String() string {
	switch k {
	case Telemetry:
		return "telemetry"
	case Event:
		return "events"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "telemetry":
		return Telemetry, nil
	case "events":
		return Event, nil
	}
	return 0, fmt.Errorf("unknown kind %q (want telemetry or events)", s)
}

// ValueType is the type of a field value.
type ValueType uint8

const (
	TypeInvalid ValueType = iota
	TypeFloat
	TypeInt
	TypeBool
	TypeString
)

func (t ValueType) String() string {
	switch t {
	case TypeFloat:
		return "float"
	case TypeInt:
		return "int"
	case TypeBool:
		return "bool"
	case TypeString:
		return "string"
	}
	return "invalid"
}

// Value is one typed field value. The zero Value is invalid.
type Value struct {
	typ ValueType
	num float64
	i   int64
	s   string
}

// Float returns a float value. NaN and infinities cannot be encoded; callers
// (drivers) must turn them into a missing field instead.
func Float(f float64) Value { return Value{typ: TypeFloat, num: f} }

// Int returns an integer value.
func Int(i int64) Value { return Value{typ: TypeInt, i: i} }

// Bool returns a boolean value.
func Bool(b bool) Value {
	v := Value{typ: TypeBool}
	if b {
		v.i = 1
	}
	return v
}

// String returns a string value.
func String(s string) Value { return Value{typ: TypeString, s: s} }

// Type reports the value's type.
func (v Value) Type() ValueType { return v.typ }

// Float returns the value as float64 (ints are converted, bools are 0 or 1).
func (v Value) Float() float64 {
	switch v.typ {
	case TypeFloat:
		return v.num
	case TypeInt, TypeBool:
		return float64(v.i)
	}
	return 0
}

// Int returns the value as int64 (floats are truncated).
func (v Value) Int() int64 {
	if v.typ == TypeFloat {
		return int64(v.num)
	}
	return v.i
}

// Bool returns the boolean (true for any non-zero number).
func (v Value) Bool() bool {
	if v.typ == TypeFloat {
		return v.num != 0
	}
	return v.i != 0
}

// Str returns the string value, or the formatted value for other types.
func (v Value) Str() string {
	switch v.typ {
	case TypeString:
		return v.s
	case TypeFloat:
		return strconv.FormatFloat(v.num, 'g', -1, 64)
	case TypeInt:
		return strconv.FormatInt(v.i, 10)
	case TypeBool:
		return strconv.FormatBool(v.i != 0)
	}
	return ""
}

// Interface returns the value as float64, int64, bool or string.
func (v Value) Interface() any {
	switch v.typ {
	case TypeFloat:
		return v.num
	case TypeInt:
		return v.i
	case TypeBool:
		return v.i != 0
	case TypeString:
		return v.s
	}
	return nil
}

// Equal reports whether two values have the same type and value.
func (v Value) Equal(o Value) bool {
	if v.typ != o.typ {
		return false
	}
	switch v.typ {
	case TypeFloat:
		return v.num == o.num
	case TypeString:
		return v.s == o.s
	}
	return v.i == o.i
}

func (v Value) String() string { return v.Str() }

// Valid reports whether the value can be encoded.
func (v Value) Valid() bool {
	switch v.typ {
	case TypeFloat:
		return !math.IsNaN(v.num) && !math.IsInf(v.num, 0)
	case TypeInt, TypeBool, TypeString:
		return true
	}
	return false
}

// Record is one observation (telemetry) or one event of a device. It maps
// one-to-one onto an InfluxDB point: Measurement, Tags (besides site and
// gateway, which the batch carries), Fields and Time, the moment the gateway
// observed the value.
type Record struct {
	Measurement string
	Tags        map[string]string
	Fields      map[string]Value
	Time        time.Time
}

// Tag returns a tag value, or "" when absent.
func (r *Record) Tag(k string) string { return r.Tags[k] }

// Message is one sealed batch as the outbox stores and the uplink publishes
// it: its per-gateway sequence number, its stream and its encoded body.
type Message struct {
	Seq     uint64
	Kind    Kind
	Records int
	Body    []byte
}

// Batch is a decoded message body.
type Batch struct {
	Version int
	Site    string
	Gateway string
	Seq     uint64
	Kind    Kind
	Sent    time.Time // when the batch was sealed
	Records []Record
}
