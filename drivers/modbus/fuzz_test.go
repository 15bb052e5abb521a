package modbus

import (
	"bytes"
	"errors"
	"testing"

	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/payload"
)

func fuzzRequest(fc, unit byte, addr, qty uint16) ([]byte, error) {
	switch fc {
	case FuncWriteSingleCoil:
		return WriteSingleCoilRequest(unit, addr, qty&1 == 1)
	case FuncWriteSingleRegister:
		return WriteSingleRegisterRequest(unit, addr, qty)
	case FuncWriteMultipleCoils:
		return WriteMultipleCoilsRequest(unit, addr, make([]bool, qty))
	case FuncWriteMultipleRegisters:
		return WriteMultipleRegistersRequest(unit, addr, make([]uint16, qty))
	}
	return ReadRequest(unit, fc, addr, qty)
}

// FuzzReply feeds arbitrary replies to ReplyLen and CheckReply for valid
// requests: neither may panic, ReplyLen must agree with what CheckReply
// accepts, and an accepted frame has a valid CRC and answers the request.
func FuzzReply(f *testing.F) {
	seeds := []struct {
		fc, unit  byte
		addr, qty uint16
		reply     string
	}{
		{1, 0x11, 0x13, 0x25, "11 01 05 CD 6B B2 0E 1B 45 E6"},
		{2, 0x11, 0xC4, 0x16, "11 02 03 AC DB 35 20 18"},
		{3, 0x11, 0x6B, 3, "11 03 06 AE 41 56 52 43 40 49 AD"},
		{4, 0x11, 8, 1, "11 04 02 00 0A F8 F4"},
		{5, 0x11, 0xAC, 1, "11 05 00 AC FF 00 4E 8B"},
		{6, 0x11, 1, 3, "11 06 00 01 00 03 9A 9B"},
		{15, 0x11, 0x13, 10, "11 0F 00 13 00 0A 26 99"},
		{16, 0x11, 1, 2, "11 10 00 01 00 02 12 98"},
		{3, 0x11, 0x6B, 3, "11 83 02 C1 34"},
		{3, 0x11, 0, 1, "11 03 FF"},
		{4, 1, 0, 125, "01 04 FA"},
	}
	for _, s := range seeds {
		f.Add(s.fc, s.unit, s.addr, s.qty, hx(f, s.reply))
	}
	f.Fuzz(func(t *testing.T, fc, unit byte, addr, qty uint16, reply []byte) {
		req, err := fuzzRequest(fc, unit, addr, qty)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("request error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if !CheckCRC(req) || req[0] != unit || req[1] != fc {
			t.Fatalf("bad request frame % X", req)
		}
		fl := ReplyLen(fc)
		frameLen := 0
		for i := 0; i <= len(reply); i++ {
			n, err := fl(reply[:i])
			if err != nil {
				if !errors.Is(err, ErrBadReply) {
					t.Fatalf("ReplyLen error %v does not wrap ErrBadReply", err)
				}
				break
			}
			if n > 0 {
				if n < exceptionLen || n > 3+maxReplyDataLen+2 || n < i {
					t.Fatalf("ReplyLen(% X) = %d", reply[:i], n)
				}
				frameLen = n
				break
			}
		}
		data, err := CheckReply(req, reply)
		if err != nil {
			var ex *ExceptionError
			if !errors.Is(err, ErrCRC) && !errors.Is(err, ErrBadReply) && !errors.As(err, &ex) {
				t.Fatalf("CheckReply error %v is none of ErrCRC, ErrBadReply, *ExceptionError", err)
			}
			if errors.As(err, &ex) && (!CheckCRC(reply) || len(reply) != exceptionLen || frameLen != exceptionLen) {
				t.Fatalf("exception accepted from % X", reply)
			}
			return
		}
		if !CheckCRC(reply) || reply[0] != unit || reply[1] != fc {
			t.Fatalf("accepted reply % X for request % X", reply, req)
		}
		if frameLen != len(reply) {
			t.Fatalf("CheckReply accepted % X but ReplyLen says %d bytes", reply, frameLen)
		}
		switch fc {
		case FuncReadHoldingRegisters, FuncReadInputRegisters:
			if len(DecodeRegisters(nil, data)) != int(qty) {
				t.Fatalf("accepted %d data bytes for %d registers", len(data), qty)
			}
		case FuncReadCoils, FuncReadDiscreteInputs:
			if len(DecodeBits(nil, data, int(qty))) != int(qty) {
				t.Fatalf("accepted %d data bytes for %d bits", len(data), qty)
			}
		default:
			if data != nil {
				t.Fatalf("write reply returned data")
			}
		}
	})
}

// FuzzLoadProfile loads arbitrary YAML: no panics, errors are
// *ProfileErrors, and a profile that loads decodes and encodes any
// register contents without panicking.
func FuzzLoadProfile(f *testing.F) {
	for _, name := range []string{"ultrasonic-bay.yaml", "geomagnetic-bay.yaml"} {
		b, err := profiles.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, []byte{0xFF, 0xFF, 0x00, 0x01, 0x80, 0x00})
	}
	f.Add([]byte(allTypes), []byte{0x7F, 0xC0, 0x00, 0x00, 0x41, 0x42})
	f.Add([]byte("name: p\nmeasurement: m\nblocks: [{function: holding, address: 65535, count: 1}]\nfields: [{name: x, address: 65535, type: string, length: 1}]\n"), []byte{0, 0xFF})
	f.Add([]byte("name: p\nmeasurement: m\nblocks: [{function: input, address: 0, count: 4}]\nfields: [{name: x, address: 0, type: int64, values: {-9223372036854775808: a, 0x7FFFFFFFFFFFFFFF: b}}]\n"), []byte{0x80})
	f.Add([]byte("blocks: {a: 1}\nfields: 3\n"), []byte{})
	f.Add([]byte("name: p\nmeasurement: m\nblocks: [{function: input, address: 0, count: 3}]\nfields:\n"+
		"  - {name: v, address: 0, type: uint16, scale: 0.01, min: 0, max: 4.2}\n"+
		"  - {name: r, address: 1, type: int16, output: int, min: -140}\n  - {name: f, address: 2, type: bool, bit: 0}\n"),
		[]byte{0xFB, 0xF4, 0x00, 0x05, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, src, raw []byte) {
		p, err := LoadProfile("fuzz.yaml", src)
		if err != nil {
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ProfileError", err)
			}
			return
		}
		for bi := range p.Blocks {
			b := &p.Blocks[bi]
			words := make([]uint16, b.Count)
			for i := range words {
				if 2*i+1 < len(raw) {
					words[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
				}
				if b.Bits() {
					words[i] &= 1
				}
			}
			dst := map[string]payload.Value{}
			p.DecodeBlockAll(bi, words, dst, nil)
			p.DecodeBlock(bi, words[:len(words)/2], dst, nil) // short reads leave fields out
			for k, v := range dst {
				if !v.Valid() {
					t.Fatalf("field %s decoded to an invalid value %v", k, v)
				}
				if fld, _ := p.Field(k); fld != nil {
					if x, ok := fld.plausible(v); !ok {
						t.Fatalf("field %s published %v outside its range %v..%v", k, x, fld.Min, fld.Max)
					}
				}
			}
		}
		for i := range p.Fields {
			fld := &p.Fields[i]
			if int(fld.Address) < int(p.Blocks[fld.Block].Address) ||
				int(fld.Address)+fld.size() > int(p.Blocks[fld.Block].Address)+int(p.Blocks[fld.Block].Count) {
				t.Fatalf("field %s lies outside its block", fld.Name)
			}
			for _, v := range []payload.Value{payload.Int(int64(len(raw))), payload.Float(-1.5), payload.Bool(true), payload.String("a")} {
				regs, err := fld.Encode(v)
				if err == nil && len(regs) != fld.Type.registers() {
					t.Fatalf("field %s encoded %v into %d registers", fld.Name, v, len(regs))
				}
			}
		}
	})
}

// FuzzSyncReply feeds arbitrary bytes, as they arrive, to SyncReplyLen and
// FindReply: neither may panic; once SyncReplyLen gives a length, FindReply
// on that many bytes finds the same frame, of the unit, which ReplyLen
// agrees with.
func FuzzSyncReply(f *testing.F) {
	f.Add(byte(0x11), byte(3), hx(f, "00 11 03 06 AE 41 56 52 43 40 49 AD"))
	f.Add(byte(0x11), byte(3), hx(f, "FF 01 11 11 83 02 C1 34"))
	f.Add(byte(0x11), byte(1), hx(f, "11 01 05 CD 6B B2 0E 1B 45 E6"))
	f.Add(byte(0x11), byte(3), hx(f, "12 03 02 00 01 00 00"))
	f.Add(byte(1), byte(4), bytes.Repeat([]byte{0x55}, 70))
	f.Fuzz(func(t *testing.T, unit, fc byte, p []byte) {
		fl := SyncReplyLen(unit, fc)
		for i := 0; i <= len(p); i++ {
			total, err := fl(p[:i])
			if err != nil {
				if !errors.Is(err, ErrCRC) && !errors.Is(err, ErrBadReply) {
					t.Fatalf("SyncReplyLen(% X) error %v wraps neither ErrCRC nor ErrBadReply", p[:i], err)
				}
				return
			}
			if total == 0 {
				continue
			}
			if total < exceptionLen || total > i+3+maxReplyDataLen+2 {
				t.Fatalf("SyncReplyLen(% X) = %d", p[:i], total)
			}
			if total > len(p) {
				return
			}
			start, n, err := FindReply(unit, fc, p[:total])
			if err != nil || start+n != total || p[start] != unit {
				t.Fatalf("FindReply(% X) = %d, %d, %v; want a frame of unit %d ending at %d", p[:total], start, n, err, unit, total)
			}
			if m, err := ReplyLen(fc)(p[start:total]); err != nil || m != n {
				t.Fatalf("ReplyLen(% X) = %d, %v; FindReply says %d", p[start:total], m, err, n)
			}
			return
		}
	})
}
