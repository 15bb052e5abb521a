// Package modbus is the gateway's Modbus RTU master and its register-map
// driver.
//
// The package has four layers:
//
//   - The codec builds request frames for the eight common function codes
//     (01 read coils, 02 read discrete inputs, 03 read holding registers,
//     04 read input registers, 05 write single coil, 06 write single
//     register, 15 write multiple coils, 16 write multiple registers) as full
//     RTU frames: unit, function code, data, CRC-16/MODBUS low byte first.
//     ReplyLen tells the bus arbiter how long a reply is from its first bytes
//     (SyncReplyLen the same after skipping line noise before the reply),
//     and CheckReply validates a reply against the request that caused it
//     (CRC, unit, function code, byte count, echo of writes). Device
//     exceptions come back as *ExceptionError, which errors.Is matches
//     against the sentinels ErrIllegalFunction, ErrIllegalDataAddress and so
//     on.
//   - Client is one device on a bus: it turns reads and writes into
//     transactions on a drivers.Transactor (the arbiter's handle) and names
//     the device, unit and operation in every error. Unit 0 is the broadcast
//     address: writes only, and no reply is awaited.
//   - A Profile is a register map loaded from YAML: the blocks to read (one
//     transaction each) and how their registers become typed fields (bits,
//     16/32/64-bit integers, float32, strings, scale and offset, word and
//     byte order, enums, not-implemented sentinels, writable settings).
//     The format is described in firmware-config/profiles/README.md.
//   - The "modbus" device driver, registered with the drivers registry,
//     polls one unit according to its profile and returns one record per
//     poll; Device.Write writes a writable field back by name.
package modbus

import (
	"errors"
	"fmt"

	"github.com/luling-edge/luling/drivers"
)

// Function codes.
const (
	FuncReadCoils              byte = 0x01
	FuncReadDiscreteInputs     byte = 0x02
	FuncReadHoldingRegisters   byte = 0x03
	FuncReadInputRegisters     byte = 0x04
	FuncWriteSingleCoil        byte = 0x05
	FuncWriteSingleRegister    byte = 0x06
	FuncWriteMultipleCoils     byte = 0x0F
	FuncWriteMultipleRegisters byte = 0x10
)

// Limits on quantities per request (Modbus application protocol v1.1b3).
const (
	MaxReadRegisters  = 125
	MaxReadBits       = 2000
	MaxWriteRegisters = 123
	MaxWriteBits      = 1968
	// BroadcastUnit addresses every device on the line; only writes may be
	// broadcast and no device replies.
	BroadcastUnit = 0
	// MaxUnit is the highest individual device address.
	MaxUnit = 247
)

// FuncName names a function code for messages ("read holding registers").
func FuncName(fc byte) string {
	switch fc &^ 0x80 {
	case FuncReadCoils:
		return "read coils"
	case FuncReadDiscreteInputs:
		return "read discrete inputs"
	case FuncReadHoldingRegisters:
		return "read holding registers"
	case FuncReadInputRegisters:
		return "read input registers"
	case FuncWriteSingleCoil:
		return "write single coil"
	case FuncWriteSingleRegister:
		return "write single register"
	case FuncWriteMultipleCoils:
		return "write multiple coils"
	case FuncWriteMultipleRegisters:
		return "write multiple registers"
	}
	return fmt.Sprintf("function 0x%02X", fc&^0x80)
}

// Errors that callers branch on. Timeouts and a missing port come from the
// bus as drivers.ErrTimeout and drivers.ErrBusDown, wrapped.
var (
	// ErrCRC means a reply's CRC does not match its bytes (line noise, a
	// collision, a wrong baud rate). It is drivers.ErrCRC, which the
	// gateway counts for every protocol.
	ErrCRC = drivers.ErrCRC
	// ErrBadReply means a reply with a valid CRC that does not answer the
	// request: another unit, another function code, a wrong length or byte
	// count, or a write echo that differs from the request.
	ErrBadReply = errors.New("bad reply")
	// ErrInvalidRequest means the request itself is out of the protocol's
	// limits (quantity, address range, unit); nothing was sent.
	ErrInvalidRequest = errors.New("invalid request")
)

// Sentinels for exception codes, matched by errors.Is on *ExceptionError.
var (
	ErrIllegalFunction        = errors.New("illegal function")
	ErrIllegalDataAddress     = errors.New("illegal data address")
	ErrIllegalDataValue       = errors.New("illegal data value")
	ErrDeviceFailure          = errors.New("server device failure")
	ErrAcknowledge            = errors.New("acknowledge (long operation in progress)")
	ErrDeviceBusy             = errors.New("server device busy")
	ErrNegativeAcknowledge    = errors.New("negative acknowledge")
	ErrMemoryParity           = errors.New("memory parity error")
	ErrGatewayPathUnavailable = errors.New("gateway path unavailable")
	ErrGatewayTargetFailed    = errors.New("gateway target device failed to respond")
)

// exceptionSentinel maps an exception code to its sentinel, nil when the
// code is not defined by the protocol.
func exceptionSentinel(code byte) error {
	switch code {
	case 0x01:
		return ErrIllegalFunction
	case 0x02:
		return ErrIllegalDataAddress
	case 0x03:
		return ErrIllegalDataValue
	case 0x04:
		return ErrDeviceFailure
	case 0x05:
		return ErrAcknowledge
	case 0x06:
		return ErrDeviceBusy
	case 0x07:
		return ErrNegativeAcknowledge
	case 0x08:
		return ErrMemoryParity
	case 0x0A:
		return ErrGatewayPathUnavailable
	case 0x0B:
		return ErrGatewayTargetFailed
	}
	return nil
}

// ExceptionError is a device's exception reply: the function code of the
// request (without the 0x80 flag) and the exception code.
type ExceptionError struct {
	Function byte
	Code     byte
}

func (e *ExceptionError) Error() string {
	if s := exceptionSentinel(e.Code); s != nil {
		return fmt.Sprintf("device exception 0x%02X (%v)", e.Code, s)
	}
	return fmt.Sprintf("device exception 0x%02X (undefined code)", e.Code)
}

// Unwrap returns the sentinel of the exception code, so that
// errors.Is(err, ErrIllegalDataAddress) works.
func (e *ExceptionError) Unwrap() error { return exceptionSentinel(e.Code) }
