package modbus

import (
	"fmt"
	"math"

	"github.com/luling-edge/luling/payload"
)

// Encode turns a value of a writable field into the raw registers to write
// (for a bool on a coil, one entry: 0 or 1). It accepts the field's output
// type (a number may be given as int or float), checks the value against
// the field's type range, its min and max, and its enum values, and applies
// scale, offset, word and byte order in reverse.
func (f *Field) Encode(v payload.Value) ([]uint16, error) {
	if !f.Writable {
		return nil, fmt.Errorf("field %q is read-only", f.Name)
	}
	if !v.Valid() {
		return nil, fmt.Errorf("field %q: value %v is not a valid %s", f.Name, v, f.Output)
	}
	if f.Type == TypeBool {
		if v.Type() != payload.TypeBool {
			return nil, fmt.Errorf("field %q takes a bool, got %s %v", f.Name, v.Type(), v)
		}
		if v.Bool() {
			return []uint16{1}, nil
		}
		return []uint16{0}, nil
	}
	var raw uint64
	switch {
	case f.Values != nil:
		key, ok := f.enumKey(v)
		if !ok {
			return nil, fmt.Errorf("field %q takes one of %s, got %s %v", f.Name, f.enumList(), v.Type(), v)
		}
		raw = uint64(key) & (1<<f.Type.bits() - 1)
		if f.Type.bits() == 64 {
			raw = uint64(key)
		}
	default:
		if v.Type() != payload.TypeFloat && v.Type() != payload.TypeInt {
			return nil, fmt.Errorf("field %q takes a number, got %s %v", f.Name, v.Type(), v)
		}
		x := v.Float()
		if !math.IsNaN(f.Min) && x < f.Min || !math.IsNaN(f.Max) && x > f.Max {
			return nil, fmt.Errorf("field %q: %v is out of range, want %v..%v", f.Name, v, f.Min, f.Max)
		}
		r, err := f.unscale(x, v)
		if err != nil {
			return nil, err
		}
		raw = r
	}
	if f.HasNotImplemented && raw == f.NotImplemented {
		return nil, fmt.Errorf("field %q: %v encodes as 0x%X, the field's not-implemented value", f.Name, v, raw)
	}
	n := f.Type.registers()
	regs := make([]uint16, n)
	for i := 0; i < n; i++ {
		r := uint16(raw >> (16 * uint(n-1-i)))
		if f.ByteOrder == LittleEndian {
			r = r<<8 | r>>8
		}
		j := i
		if f.WordOrder == LittleEndian {
			j = n - 1 - i
		}
		regs[j] = r
	}
	return regs, nil
}

// unscale turns an engineering value into the raw register contents.
func (f *Field) unscale(x float64, v payload.Value) (uint64, error) {
	var r float64
	if f.div != 0 {
		r = (x - f.Offset) * f.div
	} else {
		r = (x - f.Offset) / f.Scale
	}
	if f.Type == TypeFloat32 {
		if math.Abs(r) > math.MaxFloat32 {
			return 0, fmt.Errorf("field %q: %v is out of range for float32", f.Name, v)
		}
		return uint64(math.Float32bits(float32(r))), nil
	}
	r = math.Round(r)
	var lo, hi float64
	switch f.Type {
	case TypeUint16, TypeUint32, TypeUint64:
		lo, hi = 0, math.Ldexp(1, int(f.Type.bits()))-1
	default:
		lo, hi = -math.Ldexp(1, int(f.Type.bits())-1), math.Ldexp(1, int(f.Type.bits())-1)-1
	}
	if r < lo || r > hi {
		return 0, fmt.Errorf("field %q: %v is out of range for %s (raw %.0f, want %.0f..%.0f)", f.Name, v, f.Type, r, lo, hi)
	}
	if f.Type.signed() {
		return uint64(int64(r)) & (1<<f.Type.bits() - 1), nil
	}
	if f.Type == TypeUint64 && r >= math.Ldexp(1, 63) {
		return uint64(r), nil
	}
	return uint64(int64(r)), nil
}

// enumKey finds the raw value an enum maps to v (the smallest when several
// do).
func (f *Field) enumKey(v payload.Value) (int64, bool) {
	var best int64
	found := false
	for k, e := range f.Values {
		if e.Absent || !e.Value.Equal(v) {
			continue
		}
		if !found || k < best {
			best, found = k, true
		}
	}
	return best, found
}

func (f *Field) enumList() string {
	keys := sortedKeys(f.Values)
	s := ""
	for _, k := range keys {
		e := f.Values[k]
		if e.Absent {
			continue
		}
		if s != "" {
			s += ", "
		}
		if e.Value.Type() == payload.TypeString {
			s += fmt.Sprintf("%q", e.Value.Str())
		} else {
			s += e.Value.Str()
		}
	}
	return s
}
