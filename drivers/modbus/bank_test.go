package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/luling-edge/luling/drivers"
)

// bank is an in-test Modbus unit: a drivers.Transactor that answers
// requests from its register bank with real RTU frames, and hands the reply
// to the caller the way the bus arbiter does: byte by byte through the
// caller's frame-length function. It stands in for the bus; the code under
// test is the master.
type bank struct {
	mu       sync.Mutex
	unit     byte
	holding  []uint16
	input    []uint16
	coils    []bool
	discrete []bool
	requests [][]byte
	silent   bool                      // answer nothing (ErrTimeout)
	mangle   func(reply []byte) []byte // rewrite a reply before it goes out
}

func newBank(unit byte, size int) *bank {
	return &bank{
		unit: unit, holding: make([]uint16, size), input: make([]uint16, size),
		coils: make([]bool, size), discrete: make([]bool, size),
	}
}

var _ drivers.Transactor = (*bank)(nil)

func (b *bank) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, append([]byte(nil), req...))
	if !CheckCRC(req) {
		return nil, fmt.Errorf("bank: request % X has a bad crc", req)
	}
	if req[0] != b.unit && req[0] != BroadcastUnit {
		return nil, drivers.ErrTimeout
	}
	reply := b.serve(req)
	if frameLen == nil {
		if req[0] != BroadcastUnit {
			return nil, errors.New("bank: nil frameLen for a unicast request")
		}
		return nil, nil
	}
	if req[0] == BroadcastUnit {
		return nil, drivers.ErrTimeout // nobody answers a broadcast
	}
	if b.silent {
		return nil, drivers.ErrTimeout
	}
	if b.mangle != nil {
		reply = b.mangle(reply)
	}
	for i := 0; i <= len(reply); i++ {
		n, err := frameLen(reply[:i])
		if err != nil {
			return nil, err
		}
		if n > 0 {
			if n > len(reply) {
				return nil, drivers.ErrTimeout
			}
			return reply[:n], nil
		}
	}
	return nil, drivers.ErrTimeout
}

func (b *bank) exception(req []byte, code byte) []byte {
	return AppendCRC([]byte{req[0], req[1] | 0x80, code})
}

func (b *bank) serve(req []byte) []byte {
	fc := req[1]
	addr := int(binary.BigEndian.Uint16(req[2:]))
	qty := int(binary.BigEndian.Uint16(req[4:]))
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs:
		src := b.coils
		if fc == FuncReadDiscreteInputs {
			src = b.discrete
		}
		if qty < 1 || qty > MaxReadBits {
			return b.exception(req, 3)
		}
		if addr+qty > len(src) {
			return b.exception(req, 2)
		}
		out := []byte{req[0], fc, byte((qty + 7) / 8)}
		out = append(out, make([]byte, (qty+7)/8)...)
		for i := 0; i < qty; i++ {
			if src[addr+i] {
				out[3+i/8] |= 1 << (i % 8)
			}
		}
		return AppendCRC(out)
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		src := b.holding
		if fc == FuncReadInputRegisters {
			src = b.input
		}
		if qty < 1 || qty > MaxReadRegisters {
			return b.exception(req, 3)
		}
		if addr+qty > len(src) {
			return b.exception(req, 2)
		}
		out := []byte{req[0], fc, byte(2 * qty)}
		for _, v := range src[addr : addr+qty] {
			out = binary.BigEndian.AppendUint16(out, v)
		}
		return AppendCRC(out)
	case FuncWriteSingleCoil:
		v := binary.BigEndian.Uint16(req[4:])
		if v != 0 && v != 0xFF00 {
			return b.exception(req, 3)
		}
		if addr >= len(b.coils) {
			return b.exception(req, 2)
		}
		b.coils[addr] = v == 0xFF00
		return append([]byte(nil), req...)
	case FuncWriteSingleRegister:
		if addr >= len(b.holding) {
			return b.exception(req, 2)
		}
		b.holding[addr] = binary.BigEndian.Uint16(req[4:])
		return append([]byte(nil), req...)
	case FuncWriteMultipleCoils:
		if addr+qty > len(b.coils) {
			return b.exception(req, 2)
		}
		for i := 0; i < qty; i++ {
			b.coils[addr+i] = req[7+i/8]&(1<<(i%8)) != 0
		}
		return AppendCRC(append([]byte(nil), req[:6]...))
	case FuncWriteMultipleRegisters:
		if addr+qty > len(b.holding) {
			return b.exception(req, 2)
		}
		for i := 0; i < qty; i++ {
			b.holding[addr+i] = binary.BigEndian.Uint16(req[7+2*i:])
		}
		return AppendCRC(append([]byte(nil), req[:6]...))
	}
	return b.exception(req, 1)
}
