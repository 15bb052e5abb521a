package sunspec_test

import (
	"encoding/binary"
	"testing"

	"github.com/luling-edge/luling/drivers/sunspec"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
)

func regsToBytes(regs []uint16) []byte {
	out := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(out[2*i:], r)
	}
	return out
}

// seedBlock is a model as the simulator lays it out: every point not
// implemented, then a few values.
func seedBlock(id uint16, repeats int) []uint16 {
	def, _ := sunspec.Definition(id)
	n := def.FixedLen
	if def.Group != nil {
		n += repeats * def.Group.Len
	}
	regs := make([]uint16, n)
	regs[0], regs[1] = id, uint16(n-2)
	for _, p := range def.Points[2:] {
		copy(regs[p.Offset:], sunspecsim.NotImplemented(p.Type, p.Size))
	}
	if p, ok := def.Point("N"); ok {
		regs[p.Offset] = uint16(repeats)
	}
	if p, ok := def.Point("W"); ok && p.Size == 1 {
		regs[p.Offset] = 1234
	}
	return regs
}

// FuzzDecodeBlock feeds arbitrary register blocks (the first register is
// the model ID, the second L) to the decoder and reads every point of the
// definition: it must return values or errors, never panic, and values it
// returns must be numbers.
func FuzzDecodeBlock(f *testing.F) {
	f.Add(uint16(40002), regsToBytes(seedBlock(1, 0)))
	f.Add(uint16(40070), regsToBytes(seedBlock(103, 0)))
	f.Add(uint16(40070), regsToBytes(seedBlock(113, 0)))
	f.Add(uint16(40122), regsToBytes(seedBlock(160, 2)))
	f.Add(uint16(40122), regsToBytes(seedBlock(160, 0)))
	f.Add(uint16(40122), regsToBytes(seedBlock(122, 0)))
	f.Add(uint16(40122), regsToBytes(seedBlock(123, 0)))
	f.Add(uint16(0), []byte{0x00, 0xA0, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(0), []byte{0xFF, 0xFF})
	f.Add(uint16(65535), []byte{0x00, 0x67})
	f.Fuzz(func(t *testing.T, addr uint16, data []byte) {
		regs := make([]uint16, len(data)/2)
		for i := range regs {
			regs[i] = binary.BigEndian.Uint16(data[2*i:])
		}
		b, err := sunspec.DecodeBlock(addr, regs)
		if err != nil {
			return
		}
		if b.Def == nil {
			return
		}
		for _, p := range b.Def.Points {
			if v, err := b.Value(p.Name); err == nil && v != v {
				t.Fatalf("point %s decoded as NaN", p.Name)
			}
			_, _ = b.Uint(p.Name)
			_, _ = b.String(p.Name)
			_, _ = b.ScaleFactor(p.Name)
		}
		if b.Def.Group != nil {
			for i := range b.Repeats() + 1 {
				for _, p := range b.Def.Group.Points {
					if v, err := b.GroupValue(i, p.Name); err == nil && v != v {
						t.Fatalf("module %d point %s decoded as NaN", i, p.Name)
					}
					_, _ = b.GroupUint(i, p.Name)
					_, _ = b.GroupString(i, p.Name)
				}
			}
		}
	})
}
