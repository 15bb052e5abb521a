package modbus

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/luling-edge/luling/drivers"
)

// Client is the master side for one unit on a bus. It builds requests,
// runs them as transactions on the bus's Transactor and validates the
// replies. A Client holds no state besides its address and a counter, so
// one may be used from several goroutines; the Transactor serializes the
// bus. Line noise before a reply is skipped (SyncReplyLen) and counted.
type Client struct {
	bus   drivers.Transactor
	unit  byte
	name  string
	noise atomic.Uint64
}

// NewClient returns a client for unit (1..247, or 0 to broadcast writes) on
// bus; name is the device's name in errors.
func NewClient(bus drivers.Transactor, unit byte, name string) *Client {
	return &Client{bus: bus, unit: unit, name: name}
}

// NoiseBytes is the number of bytes of line noise skipped before replies.
func (c *Client) NoiseBytes() uint64 { return c.noise.Load() }

// Unit returns the client's unit address.
func (c *Client) Unit() byte { return c.unit }

func (c *Client) errorf(op string, addr uint16, qty int, err error) error {
	who := fmt.Sprintf("unit %d", c.unit)
	if c.unit == BroadcastUnit {
		who = "broadcast"
	}
	if qty <= 1 {
		return fmt.Errorf("modbus: %s (%s): %s %d: %w", c.name, who, op, addr, err)
	}
	return fmt.Errorf("modbus: %s (%s): %s %d..%d: %w", c.name, who, op, addr, int(addr)+qty-1, err)
}

// transact sends req and returns the validated reply data. A broadcast
// awaits no reply.
func (c *Client) transact(ctx context.Context, req []byte) ([]byte, error) {
	fc := req[1]
	if c.unit == BroadcastUnit {
		_, err := c.bus.Transact(ctx, req, nil)
		return nil, err
	}
	reply, err := c.bus.Transact(ctx, req, SyncReplyLen(c.unit, fc))
	if err != nil {
		return nil, err
	}
	if start, _, err := FindReply(c.unit, fc, reply); err == nil && start > 0 {
		c.noise.Add(uint64(start))
		reply = reply[start:]
	}
	data, err := CheckReply(req, reply)
	if err != nil {
		drivers.Resync(c.bus)
	}
	return data, err
}

func (c *Client) read(ctx context.Context, fc byte, addr, qty uint16) ([]byte, error) {
	req, err := ReadRequest(c.unit, fc, addr, qty)
	if err != nil {
		return nil, c.errorf(FuncName(fc), addr, int(qty), err)
	}
	data, err := c.transact(ctx, req)
	if err != nil {
		return nil, c.errorf(FuncName(fc), addr, int(qty), err)
	}
	return data, nil
}

// ReadRegisters reads qty registers from addr with function 03 (holding)
// or 04 (input) and appends them to dst. It lets a poll loop reuse one
// buffer.
func (c *Client) ReadRegisters(ctx context.Context, fc byte, addr, qty uint16, dst []uint16) ([]uint16, error) {
	if fc != FuncReadHoldingRegisters && fc != FuncReadInputRegisters {
		return dst, c.errorf(FuncName(fc), addr, int(qty), fmt.Errorf("not a register read: %w", ErrInvalidRequest))
	}
	data, err := c.read(ctx, fc, addr, qty)
	if err != nil {
		return dst, err
	}
	return DecodeRegisters(dst, data), nil
}

// ReadBits reads qty coils (function 01) or discrete inputs (02) from addr
// and appends them to dst.
func (c *Client) ReadBits(ctx context.Context, fc byte, addr, qty uint16, dst []bool) ([]bool, error) {
	if fc != FuncReadCoils && fc != FuncReadDiscreteInputs {
		return dst, c.errorf(FuncName(fc), addr, int(qty), fmt.Errorf("not a bit read: %w", ErrInvalidRequest))
	}
	data, err := c.read(ctx, fc, addr, qty)
	if err != nil {
		return dst, err
	}
	return DecodeBits(dst, data, int(qty)), nil
}

// ReadCoils reads qty (1..2000) coils from addr (function 01).
func (c *Client) ReadCoils(ctx context.Context, addr, qty uint16) ([]bool, error) {
	return c.ReadBits(ctx, FuncReadCoils, addr, qty, make([]bool, 0, qty))
}

// ReadDiscreteInputs reads qty (1..2000) discrete inputs from addr (function 02).
func (c *Client) ReadDiscreteInputs(ctx context.Context, addr, qty uint16) ([]bool, error) {
	return c.ReadBits(ctx, FuncReadDiscreteInputs, addr, qty, make([]bool, 0, qty))
}

// ReadHoldingRegisters reads qty (1..125) holding registers from addr (function 03).
func (c *Client) ReadHoldingRegisters(ctx context.Context, addr, qty uint16) ([]uint16, error) {
	return c.ReadRegisters(ctx, FuncReadHoldingRegisters, addr, qty, make([]uint16, 0, qty))
}

// ReadInputRegisters reads qty (1..125) input registers from addr (function 04).
func (c *Client) ReadInputRegisters(ctx context.Context, addr, qty uint16) ([]uint16, error) {
	return c.ReadRegisters(ctx, FuncReadInputRegisters, addr, qty, make([]uint16, 0, qty))
}

func (c *Client) write(ctx context.Context, fc byte, addr uint16, qty int, req []byte, err error) error {
	if err != nil {
		return c.errorf(FuncName(fc), addr, qty, err)
	}
	if _, err := c.transact(ctx, req); err != nil {
		return c.errorf(FuncName(fc), addr, qty, err)
	}
	return nil
}

// WriteSingleCoil sets or clears one coil (function 05).
func (c *Client) WriteSingleCoil(ctx context.Context, addr uint16, on bool) error {
	req, err := WriteSingleCoilRequest(c.unit, addr, on)
	return c.write(ctx, FuncWriteSingleCoil, addr, 1, req, err)
}

// WriteSingleRegister writes one holding register (function 06).
func (c *Client) WriteSingleRegister(ctx context.Context, addr, value uint16) error {
	req, err := WriteSingleRegisterRequest(c.unit, addr, value)
	return c.write(ctx, FuncWriteSingleRegister, addr, 1, req, err)
}

// WriteMultipleCoils writes 1..1968 coils from addr (function 15).
func (c *Client) WriteMultipleCoils(ctx context.Context, addr uint16, values []bool) error {
	req, err := WriteMultipleCoilsRequest(c.unit, addr, values)
	return c.write(ctx, FuncWriteMultipleCoils, addr, len(values), req, err)
}

// WriteMultipleRegisters writes 1..123 holding registers from addr (function 16).
func (c *Client) WriteMultipleRegisters(ctx context.Context, addr uint16, values []uint16) error {
	req, err := WriteMultipleRegistersRequest(c.unit, addr, values)
	return c.write(ctx, FuncWriteMultipleRegisters, addr, len(values), req, err)
}
