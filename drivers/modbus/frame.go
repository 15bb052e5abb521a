package modbus

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/luling-edge/luling/drivers"
)

// Frame lengths.
const (
	readRequestLen  = 8 // unit, fc, addr(2), qty(2), crc(2)
	writeReplyLen   = 8 // unit, fc, addr(2), value or qty(2), crc(2)
	exceptionLen    = 5 // unit, fc|0x80, code, crc(2)
	maxReplyDataLen = 250
)

func checkUnit(unit byte, broadcastOK bool) error {
	if unit > MaxUnit {
		return fmt.Errorf("unit %d is out of range, want 1..%d: %w", unit, MaxUnit, ErrInvalidRequest)
	}
	if unit == BroadcastUnit && !broadcastOK {
		return fmt.Errorf("reads cannot be broadcast (unit 0): %w", ErrInvalidRequest)
	}
	return nil
}

func checkRange(addr uint16, qty, max int) error {
	if qty < 1 || qty > max {
		return fmt.Errorf("quantity %d is out of range, want 1..%d: %w", qty, max, ErrInvalidRequest)
	}
	if int(addr)+qty > 0x10000 {
		return fmt.Errorf("addresses %d..%d run past 65535: %w", addr, int(addr)+qty-1, ErrInvalidRequest)
	}
	return nil
}

// readMax is the largest quantity a read function may ask for, 0 for a
// function that is not a read.
func readMax(fc byte) int {
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs:
		return MaxReadBits
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		return MaxReadRegisters
	}
	return 0
}

// ReadRequest builds a read request frame for function 01, 02, 03 or 04:
// qty coils or inputs (1..2000) or registers (1..125) from addr.
func ReadRequest(unit, fc byte, addr, qty uint16) ([]byte, error) {
	max := readMax(fc)
	if max == 0 {
		return nil, fmt.Errorf("function 0x%02X is not a read: %w", fc, ErrInvalidRequest)
	}
	if err := checkUnit(unit, false); err != nil {
		return nil, err
	}
	if err := checkRange(addr, int(qty), max); err != nil {
		return nil, err
	}
	f := make([]byte, 0, readRequestLen)
	f = append(f, unit, fc)
	f = binary.BigEndian.AppendUint16(f, addr)
	f = binary.BigEndian.AppendUint16(f, qty)
	return AppendCRC(f), nil
}

// WriteSingleCoilRequest builds a function 05 frame (0xFF00 = on, 0x0000 = off).
func WriteSingleCoilRequest(unit byte, addr uint16, on bool) ([]byte, error) {
	v := uint16(0x0000)
	if on {
		v = 0xFF00
	}
	return writeSingle(unit, FuncWriteSingleCoil, addr, v)
}

// WriteSingleRegisterRequest builds a function 06 frame.
func WriteSingleRegisterRequest(unit byte, addr, value uint16) ([]byte, error) {
	return writeSingle(unit, FuncWriteSingleRegister, addr, value)
}

func writeSingle(unit, fc byte, addr, value uint16) ([]byte, error) {
	if err := checkUnit(unit, true); err != nil {
		return nil, err
	}
	f := make([]byte, 0, 8)
	f = append(f, unit, fc)
	f = binary.BigEndian.AppendUint16(f, addr)
	f = binary.BigEndian.AppendUint16(f, value)
	return AppendCRC(f), nil
}

// WriteMultipleCoilsRequest builds a function 15 frame writing 1..1968
// coils from addr; coil addr is bit 0 of the first data byte.
func WriteMultipleCoilsRequest(unit byte, addr uint16, values []bool) ([]byte, error) {
	if err := checkUnit(unit, true); err != nil {
		return nil, err
	}
	if err := checkRange(addr, len(values), MaxWriteBits); err != nil {
		return nil, err
	}
	n := (len(values) + 7) / 8
	f := make([]byte, 7, 7+n+2)
	f[0], f[1] = unit, FuncWriteMultipleCoils
	binary.BigEndian.PutUint16(f[2:], addr)
	binary.BigEndian.PutUint16(f[4:], uint16(len(values)))
	f[6] = byte(n)
	f = f[:7+n]
	for i, on := range values {
		if on {
			f[7+i/8] |= 1 << (i % 8)
		}
	}
	return AppendCRC(f), nil
}

// WriteMultipleRegistersRequest builds a function 16 frame writing 1..123
// registers from addr.
func WriteMultipleRegistersRequest(unit byte, addr uint16, values []uint16) ([]byte, error) {
	if err := checkUnit(unit, true); err != nil {
		return nil, err
	}
	if err := checkRange(addr, len(values), MaxWriteRegisters); err != nil {
		return nil, err
	}
	f := make([]byte, 7, 7+2*len(values)+2)
	f[0], f[1] = unit, FuncWriteMultipleRegisters
	binary.BigEndian.PutUint16(f[2:], addr)
	binary.BigEndian.PutUint16(f[4:], uint16(len(values)))
	f[6] = byte(2 * len(values))
	for _, v := range values {
		f = binary.BigEndian.AppendUint16(f, v)
	}
	return AppendCRC(f), nil
}

// ReplyLen returns the bus arbiter's frame-length function for the reply to
// a request with function code fc. Given the bytes received so far it
// returns the reply's total length: 5 for an exception (fc|0x80), 8 for a
// write, 3+N+2 for a read where N is the byte count in the third byte; 0
// while it needs more bytes. It returns an error wrapping ErrBadReply when
// the prefix cannot start a reply to that request: another function code, a
// read byte count of 0, above 250, or odd for registers.
func ReplyLen(fc byte) drivers.FrameLenFunc {
	return func(p []byte) (int, error) { return replyLen(fc, p) }
}

func replyLen(fc byte, p []byte) (int, error) {
	if len(p) < 2 {
		return 0, nil
	}
	switch p[1] {
	case fc | 0x80:
		return exceptionLen, nil
	case fc:
	default:
		return 0, fmt.Errorf("reply has function code 0x%02X, want 0x%02X or exception 0x%02X: %w", p[1], fc, fc|0x80, ErrBadReply)
	}
	switch fc {
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		return writeReplyLen, nil
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
	default:
		return 0, fmt.Errorf("function code 0x%02X is not supported: %w", fc, ErrBadReply)
	}
	if len(p) < 3 {
		return 0, nil
	}
	n := int(p[2])
	if n == 0 || n > maxReplyDataLen {
		return 0, fmt.Errorf("%s reply has byte count %d, want 1..%d: %w", FuncName(fc), n, maxReplyDataLen, ErrBadReply)
	}
	if (fc == FuncReadHoldingRegisters || fc == FuncReadInputRegisters) && n%2 != 0 {
		return 0, fmt.Errorf("%s reply has odd byte count %d: %w", FuncName(fc), n, ErrBadReply)
	}
	return 3 + n + 2, nil
}

// maxNoise is the most line noise skipped before a reply: more than that
// without the start of a reply is not noise before a reply but a line that
// carries nothing readable (a wrong baud rate or parity).
const maxNoise = 64

// SyncReplyLen is ReplyLen for a line with noise: the reply to unit's
// request with function code fc may come after garbage (a glitch as the
// slave's transmitter turns on, the tail of an earlier frame). It skips
// bytes up to the first place where the unit address, fc or fc|0x80 and,
// for a read, a byte count that could answer fc follow each other, and
// returns the length of the garbage and the frame together. FindReply
// gives where the frame starts. More than maxNoise bytes without a
// plausible start is an error wrapping ErrCRC: the line carries nothing
// readable. A frame that starts plausibly but was garbled further on is
// taken as it is; CheckReply then finds its CRC wrong.
func SyncReplyLen(unit, fc byte) drivers.FrameLenFunc {
	return func(p []byte) (int, error) {
		start, n, err := FindReply(unit, fc, p)
		if err != nil || n == 0 {
			return 0, err
		}
		return start + n, nil
	}
}

// FindReply finds the reply to unit's request with function code fc in p
// after leading noise, as SyncReplyLen does: its start and length, or n = 0
// while more bytes are needed.
func FindReply(unit, fc byte, p []byte) (start, n int, err error) {
	for start = 0; start < len(p); start++ {
		q := p[start:]
		if q[0] == unit {
			if n, err := replyLen(fc, q); err == nil {
				return start, n, nil // n = 0: a plausible start, too short to tell
			}
		}
		if err := foreignFrame(unit, fc, q); err != nil {
			return 0, 0, err
		}
	}
	if len(p) > maxNoise {
		return 0, 0, fmt.Errorf("%d bytes of line noise without a reply from unit %d (% X ...): %w", len(p), unit, p[:8], ErrCRC)
	}
	return 0, 0, nil
}

// foreignFrame returns an error wrapping ErrBadReply when q starts with a
// whole frame with a valid CRC that does not answer the request: another
// unit answering (two devices on one address, a wrong unit in the config)
// or another function code. That is a reply, not noise, and worth naming.
func foreignFrame(unit, fc byte, q []byte) error {
	if len(q) < 2 {
		return nil
	}
	n, err := replyLen(q[1]&^0x80, q)
	if err != nil || n == 0 || n > len(q) || !CheckCRC(q[:n]) {
		return nil
	}
	if q[0] != unit {
		return fmt.Errorf("reply comes from unit %d, want unit %d: %w", q[0], unit, ErrBadReply)
	}
	return fmt.Errorf("reply has function code 0x%02X, want 0x%02X or exception 0x%02X: %w", q[1], fc, fc|0x80, ErrBadReply)
}

// CheckReply validates reply as the answer to req (a frame built by this
// package) and returns the reply's data: for reads the N data bytes
// (registers big-endian, or bits packed LSB first), for writes nil. It
// checks, in this order, the CRC (ErrCRC), the unit, an exception reply
// (*ExceptionError), the function code, the byte count against the
// requested quantity and the frame length (ErrBadReply), and for writes the
// echo of address and value or quantity (ErrBadReply). The returned data
// aliases reply.
func CheckReply(req, reply []byte) ([]byte, error) {
	if len(req) < readRequestLen {
		return nil, fmt.Errorf("request is %d bytes, want at least %d: %w", len(req), readRequestLen, ErrInvalidRequest)
	}
	unit, fc := req[0], req[1]
	if len(reply) < exceptionLen {
		return nil, fmt.Errorf("reply is %d bytes, want at least %d: %w", len(reply), exceptionLen, ErrBadReply)
	}
	if !CheckCRC(reply) {
		return nil, ErrCRC
	}
	if reply[0] != unit {
		return nil, fmt.Errorf("reply comes from unit %d, want unit %d: %w", reply[0], unit, ErrBadReply)
	}
	if reply[1] == fc|0x80 {
		if len(reply) != exceptionLen {
			return nil, fmt.Errorf("exception reply is %d bytes, want %d: %w", len(reply), exceptionLen, ErrBadReply)
		}
		return nil, &ExceptionError{Function: fc, Code: reply[2]}
	}
	if reply[1] != fc {
		return nil, fmt.Errorf("reply has function code 0x%02X, want 0x%02X: %w", reply[1], fc, ErrBadReply)
	}
	qty := int(binary.BigEndian.Uint16(req[4:6]))
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		want := (qty + 7) / 8
		if fc == FuncReadHoldingRegisters || fc == FuncReadInputRegisters {
			want = 2 * qty
		}
		if int(reply[2]) != want {
			return nil, fmt.Errorf("reply byte count is %d, want %d for %d items: %w", reply[2], want, qty, ErrBadReply)
		}
		if len(reply) != 3+want+2 {
			return nil, fmt.Errorf("reply is %d bytes, want %d: %w", len(reply), 3+want+2, ErrBadReply)
		}
		return reply[3 : 3+want], nil
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(reply) != writeReplyLen {
			return nil, fmt.Errorf("reply is %d bytes, want %d: %w", len(reply), writeReplyLen, ErrBadReply)
		}
		if !bytes.Equal(reply[2:6], req[2:6]) {
			return nil, fmt.Errorf("reply echoes % X, want % X: %w", reply[2:6], req[2:6], ErrBadReply)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("function code 0x%02X is not supported: %w", fc, ErrInvalidRequest)
}

// DecodeRegisters appends the big-endian registers in data to dst.
func DecodeRegisters(dst []uint16, data []byte) []uint16 {
	for i := 0; i+1 < len(data); i += 2 {
		dst = append(dst, binary.BigEndian.Uint16(data[i:]))
	}
	return dst
}

// DecodeBits appends qty bits packed LSB first in data to dst (fewer when
// data is short).
func DecodeBits(dst []bool, data []byte, qty int) []bool {
	for i := 0; i < qty && i/8 < len(data); i++ {
		dst = append(dst, data[i/8]&(1<<(i%8)) != 0)
	}
	return dst
}
