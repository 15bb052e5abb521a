package modbus

import (
	"math"
	"strings"

	"github.com/luling-edge/luling/payload"
)

// Type is how a field's registers are read.
type Type uint8

// Field types.
const (
	TypeBool    Type = iota + 1 // a coil or discrete input, or one bit of a register
	TypeUint16                  // one register
	TypeInt16                   // one register, two's complement
	TypeUint32                  // two registers
	TypeInt32                   // two registers, two's complement
	TypeFloat32                 // two registers, IEEE 754 single
	TypeUint64                  // four registers
	TypeInt64                   // four registers, two's complement
	TypeString                  // Length registers, two bytes each, NUL or space padded
)

var typeNames = [...]string{
	TypeBool: "bool", TypeUint16: "uint16", TypeInt16: "int16", TypeUint32: "uint32", TypeInt32: "int32",
	TypeFloat32: "float32", TypeUint64: "uint64", TypeInt64: "int64", TypeString: "string",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "invalid"
}

// registers is the number of registers a fixed-size type spans.
func (t Type) registers() int {
	switch t {
	case TypeUint32, TypeInt32, TypeFloat32:
		return 2
	case TypeUint64, TypeInt64:
		return 4
	}
	return 1
}

func (t Type) integer() bool {
	switch t {
	case TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeUint64, TypeInt64:
		return true
	}
	return false
}

func (t Type) signed() bool { return t == TypeInt16 || t == TypeInt32 || t == TypeInt64 }

// bits is the width of a numeric type.
func (t Type) bits() uint { return uint(16 * t.registers()) }

// Order is a byte or word order.
type Order uint8

// Orders. Big endian (most significant first) is Modbus's own order and the
// default for both bytes within a register and registers within a value.
const (
	BigEndian Order = iota
	LittleEndian
)

func (o Order) String() string {
	if o == LittleEndian {
		return "little"
	}
	return "big"
}

// Block is one read transaction of a profile.
type Block struct {
	Name     string
	Function byte   // FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters or FuncReadInputRegisters
	Address  uint16 // first address
	Count    uint16 // registers, coils or inputs

	fields    []int // indices of the block's fields
	published []int // indices of its published fields
}

// Bits reports whether the block reads coils or discrete inputs.
func (b *Block) Bits() bool {
	return b.Function == FuncReadCoils || b.Function == FuncReadDiscreteInputs
}

// EnumValue is what a raw value of an enum field becomes: a value, or
// Absent when the raw value means "no reading" (the field is left out
// without being reported).
type EnumValue struct {
	Value  payload.Value
	Absent bool
}

// Field is one value a profile reads from a block.
type Field struct {
	Name        string
	Description string
	Block       int    // index into Profile.Blocks
	Address     uint16 // first register (or coil) of the field
	Type        Type
	Bit         int // 0..15 for a bool taken from a register, -1 otherwise
	Length      int // registers, for strings
	Scale       float64
	Offset      float64
	WordOrder   Order // registers within a 32/64-bit value
	ByteOrder   Order // bytes within a register
	// Values maps raw integers to values (an enum); nil when the field is
	// not an enum. A raw value not in the map leaves the field out and is
	// reported as an Issue.
	Values map[int64]EnumValue
	// NotImplemented, when HasNotImplemented, is a raw value (the
	// register contents as an unsigned integer) that means "no reading":
	// the field is left out.
	NotImplemented    uint64
	HasNotImplemented bool
	Publish           bool // sent as telemetry
	Writable          bool // may be written with Device.Write
	// Min and Max are the field's valid range in engineering units (NaN =
	// none): a write outside it is refused, and a reading outside it is
	// implausible (left out and reported as an Issue).
	Min, Max float64
	Output   payload.ValueType // the type of the decoded value
	Line     int               // line of the field in its profile file

	div float64 // 1/Scale when that is a whole number (exact decimal scaling), else 0
}

// size is the number of registers (or bits) the field spans.
func (f *Field) size() int {
	if f.Type == TypeString {
		return f.Length
	}
	return f.Type.registers()
}

// Profile is a register map: what to read from a device and how its
// registers become the fields of one record. A loaded Profile is not
// modified again and may be shared by any number of devices.
type Profile struct {
	Name        string
	Description string
	Measurement string
	File        string // where it was loaded from, for messages
	Blocks      []Block
	Fields      []Field

	byName map[string]int
}

// Field returns the field called name.
func (p *Profile) Field(name string) (*Field, bool) {
	i, ok := p.byName[name]
	if !ok {
		return nil, false
	}
	return &p.Fields[i], true
}

// Issue is a raw value a poll could not turn into a field value: an enum
// value the profile does not map, or a float that is not finite. The field
// is left out of the record.
type Issue struct {
	Field  string
	Raw    uint64  // the register contents as an unsigned integer
	Value  float64 // the decoded value, for ReasonImplausible
	Reason string
}

// Issue reasons.
const (
	ReasonUnmapped  = "raw value not in the field's values map"
	ReasonNotFinite = "float32 value is not a finite number"
	// ReasonImplausible: the value lies outside the field's min..max.
	ReasonImplausible = "value outside the field's valid range (min..max)"
)

// DecodeBlock decodes the published fields of block b from words (the
// block's registers; for coil and discrete blocks one entry per bit, 0 or
// 1) into dst, and appends what it could not decode to issues. It does not
// allocate, except for string fields; a field absent from the reading
// (sentinel, enum "null", issue) is deleted from dst.
func (p *Profile) DecodeBlock(b int, words []uint16, dst map[string]payload.Value, issues []Issue) []Issue {
	return p.decode(p.Blocks[b].published, words, dst, issues)
}

// DecodeBlockAll is DecodeBlock including the fields that are not
// published (settings such as an LED colour or a threshold).
func (p *Profile) DecodeBlockAll(b int, words []uint16, dst map[string]payload.Value, issues []Issue) []Issue {
	return p.decode(p.Blocks[b].fields, words, dst, issues)
}

func (p *Profile) decode(idx []int, words []uint16, dst map[string]payload.Value, issues []Issue) []Issue {
	for _, i := range idx {
		f := &p.Fields[i]
		off := int(f.Address - p.Blocks[f.Block].Address)
		if off+f.size() > len(words) {
			delete(dst, f.Name)
			continue
		}
		v, ok, issue := f.decode(words[off : off+f.size()])
		var x float64
		if ok {
			if x, ok = f.plausible(v); !ok {
				issue = ReasonImplausible
			}
		}
		if issue != "" {
			issues = append(issues, Issue{Field: f.Name, Raw: f.raw(words[off : off+f.size()]), Value: x, Reason: issue})
		}
		if ok {
			dst[f.Name] = v
		} else {
			delete(dst, f.Name)
		}
	}
	return issues
}

// plausible returns a numeric value as a float and whether it lies within
// the field's min..max; values of fields without limits are plausible.
func (f *Field) plausible(v payload.Value) (float64, bool) {
	var x float64
	switch v.Type() {
	case payload.TypeFloat:
		x = v.Float()
	case payload.TypeInt:
		x = float64(v.Int())
	default:
		return 0, true
	}
	return x, !(x < f.Min) && !(x > f.Max) // false against NaN: no limit
}

// raw assembles a field's registers into one unsigned integer, honouring
// byte and word order.
func (f *Field) raw(regs []uint16) uint64 {
	if f.Type == TypeString || f.Type == TypeBool && f.Bit < 0 {
		if len(regs) > 0 {
			return uint64(regs[0])
		}
		return 0
	}
	var raw uint64
	n := len(regs)
	for i := 0; i < n; i++ {
		j := i
		if f.WordOrder == LittleEndian {
			j = n - 1 - i
		}
		r := regs[j]
		if f.ByteOrder == LittleEndian {
			r = r<<8 | r>>8
		}
		raw = raw<<16 | uint64(r)
	}
	return raw
}

// signExtend interprets raw as a signed integer of the field's width.
func (f *Field) signExtend(raw uint64) int64 {
	shift := 64 - f.Type.bits()
	return int64(raw<<shift) >> shift
}

func (f *Field) scaled(x float64) float64 {
	if f.div != 0 {
		return x/f.div + f.Offset
	}
	return x*f.Scale + f.Offset
}

// decode returns the field's value, whether it is present, and an issue
// reason when it is absent for an unexpected reason.
func (f *Field) decode(regs []uint16) (payload.Value, bool, string) {
	if f.Type == TypeBool {
		if f.Bit < 0 {
			return payload.Bool(regs[0] != 0), true, ""
		}
		r := regs[0]
		if f.ByteOrder == LittleEndian {
			r = r<<8 | r>>8
		}
		return payload.Bool(r>>uint(f.Bit)&1 != 0), true, ""
	}
	if f.Type == TypeString {
		return payload.String(f.decodeString(regs)), true, ""
	}
	raw := f.raw(regs)
	if f.HasNotImplemented && raw == f.NotImplemented {
		return payload.Value{}, false, ""
	}
	if f.Type == TypeFloat32 {
		x := float64(math.Float32frombits(uint32(raw)))
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return payload.Value{}, false, ReasonNotFinite
		}
		return payload.Float(f.scaled(x)), true, ""
	}
	var key int64
	if f.Type.signed() {
		key = f.signExtend(raw)
	} else {
		key = int64(raw)
	}
	if f.Values != nil {
		e, ok := f.Values[key]
		if !ok {
			return payload.Value{}, false, ReasonUnmapped
		}
		if e.Absent {
			return payload.Value{}, false, ""
		}
		return e.Value, true, ""
	}
	if f.Output == payload.TypeInt {
		return payload.Int(key), true, ""
	}
	var x float64
	if f.Type == TypeUint64 {
		x = float64(raw)
	} else {
		x = float64(key)
	}
	return payload.Float(f.scaled(x)), true, ""
}

func (f *Field) decodeString(regs []uint16) string {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		if f.ByteOrder == LittleEndian {
			r = r<<8 | r>>8
		}
		b = append(b, byte(r>>8), byte(r))
	}
	end := len(b)
	for end > 0 && (b[end-1] == 0 || b[end-1] == ' ') {
		end--
	}
	for i := 0; i < end; i++ {
		if b[i] == 0 {
			end = i
			break
		}
	}
	return strings.ToValidUTF8(string(b[:end]), "\uFFFD")
}
