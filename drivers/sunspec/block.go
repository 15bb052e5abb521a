package sunspec

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrNotImplemented means a point holds its type's not-implemented value
// (or its scale factor does): the device does not measure it.
var ErrNotImplemented = errors.New("not implemented by the device")

// Block is one model as read from a device: its definition (nil for a model
// the package has no definition of), the address of its ID register, its
// length L and its registers (L+2 of them, ID and L included).
type Block struct {
	Def     *ModelDef
	ID      uint16
	Addr    uint16
	L       int
	Regs    []uint16
	repeats int
}

// DecodeBlock checks a model's registers (ID and L first) against its
// definition and returns the block. It keeps regs. Arbitrary input gives a
// block or an error, never a panic.
func DecodeBlock(addr uint16, regs []uint16) (*Block, error) {
	if len(regs) < 2 {
		return nil, fmt.Errorf("sunspec: model at %d: %d registers, want at least ID and L", addr, len(regs))
	}
	b := &Block{ID: regs[0], Addr: addr, L: int(regs[1]), Regs: regs}
	if b.ID == 0xFFFF || b.ID == 0 {
		return nil, fmt.Errorf("sunspec: model at %d: id 0x%04X is not a model", addr, b.ID)
	}
	if len(regs) != b.L+2 {
		return nil, fmt.Errorf("sunspec: model %d at %d: %d registers, its length %d wants %d", b.ID, addr, len(regs), b.L, b.L+2)
	}
	def, ok := Definition(b.ID)
	if !ok {
		return b, nil
	}
	n, err := def.Repeats(b.L)
	if err != nil {
		return nil, fmt.Errorf("sunspec: at %d: %w", addr, err)
	}
	b.Def, b.repeats = def, n
	if c, ok := def.Point("N"); ok && c.Type == TypeCount {
		if v := b.Regs[c.Offset]; v != 0xFFFF && int(v) != n {
			return nil, fmt.Errorf("sunspec: model %d at %d: count N is %d but length %d holds %d %s blocks", b.ID, addr, v, b.L, n, def.Group.Name)
		}
	}
	return b, nil
}

// Name is the model's name from its definition, or "model_<id>" for an
// unknown one.
func (b *Block) Name() string {
	if b.Def == nil {
		return fmt.Sprintf("model_%d", b.ID)
	}
	return b.Def.Name
}

// Repeats is the number of repetitions of the model's group (modules of
// model 160).
func (b *Block) Repeats() int { return b.repeats }

func (b *Block) point(name string) (*Point, error) {
	if b.Def == nil {
		return nil, fmt.Errorf("sunspec: model %d has no definition", b.ID)
	}
	p, ok := b.Def.Point(name)
	if !ok {
		return nil, fmt.Errorf("sunspec: model %d (%s) has no point %s", b.ID, b.Def.Name, name)
	}
	return p, nil
}

func (b *Block) groupPoint(i int, name string) (*Point, []uint16, error) {
	if b.Def == nil || b.Def.Group == nil {
		return nil, nil, fmt.Errorf("sunspec: model %d has no repeating group", b.ID)
	}
	if i < 0 || i >= b.repeats {
		return nil, nil, fmt.Errorf("sunspec: model %d (%s): %s %d of %d", b.ID, b.Def.Name, b.Def.Group.Name, i, b.repeats)
	}
	p, ok := b.Def.Group.Point(name)
	if !ok {
		return nil, nil, fmt.Errorf("sunspec: model %d (%s): group %s has no point %s", b.ID, b.Def.Name, b.Def.Group.Name, name)
	}
	start := b.Def.FixedLen + i*b.Def.Group.Len
	return p, b.Regs[start : start+b.Def.Group.Len], nil
}

// Value returns a fixed point's value with its scale factor applied.
// It fails with ErrNotImplemented for a point the device does not fill.
func (b *Block) Value(name string) (float64, error) {
	p, err := b.point(name)
	if err != nil {
		return 0, err
	}
	return b.scaled(p, b.Regs)
}

// GroupValue returns point name of the i-th group repetition (0-based),
// scaled by its scale factor in the fixed block.
func (b *Block) GroupValue(i int, name string) (float64, error) {
	p, regs, err := b.groupPoint(i, name)
	if err != nil {
		return 0, err
	}
	return b.scaled(p, regs)
}

// Uint returns a fixed integer point's raw value (enums, bitfields,
// unsigned counters), unscaled.
func (b *Block) Uint(name string) (uint64, error) {
	p, err := b.point(name)
	if err != nil {
		return 0, err
	}
	return rawUint(p, b.Regs)
}

// GroupUint returns a group point's raw integer value.
func (b *Block) GroupUint(i int, name string) (uint64, error) {
	p, regs, err := b.groupPoint(i, name)
	if err != nil {
		return 0, err
	}
	return rawUint(p, regs)
}

// String returns a string point, without its trailing NULs and spaces.
func (b *Block) String(name string) (string, error) {
	p, err := b.point(name)
	if err != nil {
		return "", err
	}
	return rawString(p, b.Regs)
}

// GroupString returns a group's string point.
func (b *Block) GroupString(i int, name string) (string, error) {
	p, regs, err := b.groupPoint(i, name)
	if err != nil {
		return "", err
	}
	return rawString(p, regs)
}

// ScaleFactor returns the exponent held by sunssf point name.
func (b *Block) ScaleFactor(name string) (int, error) {
	p, err := b.point(name)
	if err != nil {
		return 0, err
	}
	return scaleFactor(p, b.Regs)
}

func scaleFactor(p *Point, regs []uint16) (int, error) {
	if p.Type != TypeSunssf {
		return 0, fmt.Errorf("point %s is %s, not sunssf", p.Name, p.Type)
	}
	v := regs[p.Offset]
	if v == 0x8000 {
		return 0, fmt.Errorf("scale factor %s: %w", p.Name, ErrNotImplemented)
	}
	sf := int(int16(v))
	if sf < -10 || sf > 10 {
		return 0, fmt.Errorf("scale factor %s is %d, want -10..10", p.Name, sf)
	}
	return sf, nil
}

func (b *Block) scaled(p *Point, regs []uint16) (float64, error) {
	v, err := rawNumber(p, regs)
	if err != nil {
		return 0, err
	}
	if p.SF == "" {
		return v, nil
	}
	sp, _ := b.Def.Point(p.SF) // checked when the definition was loaded
	sf, err := scaleFactor(sp, b.Regs)
	if err != nil {
		return 0, fmt.Errorf("point %s: %w", p.Name, err)
	}
	return Scale(v, sf), nil
}

// Scale returns v × 10^sf, as exactly as float64 allows: an integer divided
// by an exact power of ten gives the double nearest the decimal value
// (2345 with sf -1 is 234.5, not 234.50000000000003).
func Scale(v float64, sf int) float64 {
	switch {
	case sf > 0:
		return v * math.Pow10(sf)
	case sf < 0:
		return v / math.Pow10(-sf)
	}
	return v
}

func regs32(r []uint16, off int) uint32 { return uint32(r[off])<<16 | uint32(r[off+1]) }

func regs64(r []uint16, off int) uint64 {
	return uint64(r[off])<<48 | uint64(r[off+1])<<32 | uint64(r[off+2])<<16 | uint64(r[off+3])
}

func notImpl(p *Point) error { return fmt.Errorf("point %s: %w", p.Name, ErrNotImplemented) }

// rawNumber decodes a numeric point, unscaled; not-implemented values give
// ErrNotImplemented (sentinels after SunSpec's pysunspec2 mb.py).
func rawNumber(p *Point, r []uint16) (float64, error) {
	switch p.Type {
	case TypeInt16, TypeSunssf:
		v := r[p.Offset]
		if v == 0x8000 {
			return 0, notImpl(p)
		}
		return float64(int16(v)), nil
	case TypeInt32:
		v := regs32(r, p.Offset)
		if v == 0x80000000 {
			return 0, notImpl(p)
		}
		return float64(int32(v)), nil
	case TypeInt64:
		v := regs64(r, p.Offset)
		if v == 0x8000000000000000 {
			return 0, notImpl(p)
		}
		return float64(int64(v)), nil
	case TypeFloat32:
		f := float64(math.Float32frombits(regs32(r, p.Offset)))
		if math.IsNaN(f) {
			return 0, notImpl(p)
		}
		return f, nil
	case TypeFloat64:
		f := math.Float64frombits(regs64(r, p.Offset))
		if math.IsNaN(f) {
			return 0, notImpl(p)
		}
		return f, nil
	}
	u, err := rawUint(p, r)
	if err != nil {
		return 0, err
	}
	return float64(u), nil
}

// rawUint decodes an unsigned integer point (uint, acc, count, enum,
// bitfield) unscaled.
func rawUint(p *Point, r []uint16) (uint64, error) {
	switch p.Type {
	case TypeUint16, TypeCount, TypeEnum16, TypeBitfield16:
		v := r[p.Offset]
		if v == 0xFFFF {
			return 0, notImpl(p)
		}
		return uint64(v), nil
	case TypeAcc16:
		v := r[p.Offset]
		if v == 0 {
			return 0, notImpl(p)
		}
		return uint64(v), nil
	case TypeUint32, TypeEnum32, TypeBitfield32:
		v := regs32(r, p.Offset)
		if v == 0xFFFFFFFF {
			return 0, notImpl(p)
		}
		return uint64(v), nil
	case TypeAcc32:
		v := regs32(r, p.Offset)
		if v == 0 {
			return 0, notImpl(p)
		}
		return uint64(v), nil
	case TypeUint64:
		v := regs64(r, p.Offset)
		if v == 0xFFFFFFFFFFFFFFFF {
			return 0, notImpl(p)
		}
		return v, nil
	case TypeAcc64:
		v := regs64(r, p.Offset)
		if v == 0 {
			return 0, notImpl(p)
		}
		return v, nil
	}
	return 0, fmt.Errorf("point %s is %s, not an unsigned integer", p.Name, p.Type)
}

func rawString(p *Point, r []uint16) (string, error) {
	if p.Type != TypeString {
		return "", fmt.Errorf("point %s is %s, not a string", p.Name, p.Type)
	}
	buf := make([]byte, 0, 2*p.Size)
	for _, v := range r[p.Offset : p.Offset+p.Size] {
		buf = append(buf, byte(v>>8), byte(v))
	}
	if i := strings.IndexByte(string(buf), 0); i >= 0 {
		buf = buf[:i]
	}
	s := strings.TrimRight(string(buf), " ")
	if s == "" {
		return "", notImpl(p)
	}
	return strings.ToValidUTF8(s, "?"), nil
}

// EncodeString lays s out as a string point of size registers, NUL-padded.
func EncodeString(s string, size int) []uint16 {
	out := make([]uint16, size)
	for i := 0; i < len(s) && i < 2*size; i++ {
		if i%2 == 0 {
			out[i/2] |= uint16(s[i]) << 8
		} else {
			out[i/2] |= uint16(s[i])
		}
	}
	return out
}
