package modbussim

import (
	"errors"
	"fmt"

	"github.com/luling-edge/luling/drivers/modbus"
)

// Function codes the simulator serves: the master's, so both sides of the
// line speak from one table.
const (
	FuncReadCoils              = modbus.FuncReadCoils
	FuncReadDiscreteInputs     = modbus.FuncReadDiscreteInputs
	FuncReadHoldingRegisters   = modbus.FuncReadHoldingRegisters
	FuncReadInputRegisters     = modbus.FuncReadInputRegisters
	FuncWriteSingleCoil        = modbus.FuncWriteSingleCoil
	FuncWriteSingleRegister    = modbus.FuncWriteSingleRegister
	FuncWriteMultipleCoils     = modbus.FuncWriteMultipleCoils
	FuncWriteMultipleRegisters = modbus.FuncWriteMultipleRegisters
)

// Exception is a Modbus exception code, sent as fc|0x80 followed by the code.
type Exception byte

// Exception codes the simulator sends.
const (
	IllegalFunction     Exception = 0x01
	IllegalDataAddress  Exception = 0x02
	IllegalDataValue    Exception = 0x03
	ServerDeviceFailure Exception = 0x04
)

func (e Exception) Error() string {
	switch e {
	case IllegalFunction:
		return "modbus exception 01: illegal function"
	case IllegalDataAddress:
		return "modbus exception 02: illegal data address"
	case IllegalDataValue:
		return "modbus exception 03: illegal data value"
	case ServerDeviceFailure:
		return "modbus exception 04: server device failure"
	}
	return fmt.Sprintf("modbus exception %02x", byte(e))
}

// Limits of the protocol (Modbus application protocol 1.1b3, 6.1–6.12).
const (
	maxADU        = 256  // largest serial-line frame: address + PDU (253) + CRC
	maxUnit       = 247  // highest individual address; 248–255 are reserved
	maxReadBits   = 2000 // FC01/02
	maxReadRegs   = 125  // FC03/04
	maxWriteBits  = 1968 // FC15
	maxWriteRegs  = 123  // FC16
	minFrame      = 4    // address, function, CRC
	broadcastUnit = 0
)

// errGarbage means the bytes at the head of the buffer cannot start a
// request frame: the framer drops a byte and resynchronises.
var errGarbage = errors.New("not the start of a request frame")

// requestLen finds the length of the request frame at the head of buf from
// its function code, as a pty delivers bytes without the silences a real
// line has. It returns 0 when it needs more bytes to know, and errGarbage
// when buf cannot start a request. inSync tells whether buf starts right
// after a good frame; out of sync it is stricter, so that garbage does not
// hold back a good frame behind it.
func requestLen(buf []byte, inSync bool) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	if buf[0] > maxUnit {
		return 0, fmt.Errorf("address %d: %w", buf[0], errGarbage)
	}
	if len(buf) < 2 {
		return 0, nil
	}
	switch fc := buf[1]; fc {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncWriteSingleCoil, FuncWriteSingleRegister:
		return 8, nil
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(buf) < 7 {
			return 0, nil
		}
		n := 9 + int(buf[6])
		if n > maxADU {
			return 0, fmt.Errorf("function %02x byte count %d: %w", fc, buf[6], errGarbage)
		}
		if !inSync && int(buf[6]) != writeByteCount(fc, be16(buf[4:])) {
			return 0, fmt.Errorf("function %02x byte count %d for quantity %d: %w", fc, buf[6], be16(buf[4:]), errGarbage)
		}
		return n, nil
	default:
		if fc == 0 || fc&0x80 != 0 {
			return 0, fmt.Errorf("function %02x: %w", fc, errGarbage)
		}
		// An unknown function: its length is unknown, so take the shortest
		// prefix that carries its own CRC.
		if n := crcPrefix(buf); n > 0 {
			return n, nil
		}
		if !inSync || len(buf) >= maxADU {
			return 0, fmt.Errorf("function %02x without a valid CRC: %w", fc, errGarbage)
		}
		return 0, nil
	}
}

// writeByteCount is the byte count a FC15/16 request of qty items carries.
func writeByteCount(fc byte, qty uint16) int {
	if fc == FuncWriteMultipleCoils {
		return (int(qty) + 7) / 8
	}
	return 2 * int(qty)
}

// ReplyLen is the length of the normal reply to a well-formed request with
// function fc and quantity qty (ignored for single writes), CRC included.
// An exception reply is 5 bytes.
func ReplyLen(fc byte, qty int) int {
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs:
		return 5 + (qty+7)/8
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		return 5 + 2*qty
	default:
		return 8
	}
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func appendBE16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

// appendException appends the exception reply of unit to function fc.
func appendException(dst []byte, unit, fc byte, e Exception) []byte {
	return modbus.AppendCRC(append(dst, unit, fc|0x80, byte(e)))
}

// crcPrefix returns the length of the shortest prefix of buf, at least
// minFrame and at most maxADU bytes, that ends in the CRC of what precedes
// it, or 0. It keeps a running CRC, so a flood of garbage costs linear time.
func crcPrefix(buf []byte) int {
	crc := uint16(0xFFFF)
	for i, b := range buf {
		n := i + 3 // the frame that ends with the CRC of buf[:i+1]
		if n > len(buf) || n > maxADU {
			break
		}
		crc = crcStep(crc, b)
		if n >= minFrame && buf[i+1] == byte(crc) && buf[i+2] == byte(crc>>8) {
			return n
		}
	}
	return 0
}

// crcStep adds one byte to a running CRC-16/MODBUS.
func crcStep(crc uint16, b byte) uint16 {
	crc ^= uint16(b)
	for range 8 {
		if crc&1 != 0 {
			crc = crc>>1 ^ 0xA001
		} else {
			crc >>= 1
		}
	}
	return crc
}
