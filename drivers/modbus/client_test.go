package modbus

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/luling-edge/luling/drivers"
)

func TestClientReads(t *testing.T) {
	ctx := context.Background()
	b := newBank(17, 200)
	for i := range b.holding {
		b.holding[i] = uint16(0x1000 + i)
		b.input[i] = uint16(0x2000 + i)
		b.coils[i] = i%3 == 0
		b.discrete[i] = i%5 == 0
	}
	c := NewClient(b, 17, "bay-17")
	regs, err := c.ReadHoldingRegisters(ctx, 10, 125)
	if err != nil || len(regs) != 125 || regs[0] != 0x100A || regs[124] != 0x1000+134 {
		t.Fatalf("holding: %v, %04X", err, regs)
	}
	if want := AppendCRC(hx(t, "11 03 00 0A 00 7D")); !bytes.Equal(b.requests[0], want) {
		t.Fatalf("request % X, want % X", b.requests[0], want)
	}
	regs, err = c.ReadInputRegisters(ctx, 0, 3)
	if err != nil || !equalSlices(regs, []uint16{0x2000, 0x2001, 0x2002}) {
		t.Fatalf("input: %v, %04X", err, regs)
	}
	bits, err := c.ReadCoils(ctx, 1, 11)
	want := []bool{false, false, true, false, false, true, false, false, true, false, false}
	if err != nil || !equalSlices(bits, want) {
		t.Fatalf("coils: %v, %v", err, bits)
	}
	bits, err = c.ReadDiscreteInputs(ctx, 0, 6)
	if err != nil || !equalSlices(bits, []bool{true, false, false, false, false, true}) {
		t.Fatalf("discrete: %v, %v", err, bits)
	}
	// Reusing a buffer appends to it.
	buf := make([]uint16, 0, 8)
	buf, err = c.ReadRegisters(ctx, FuncReadHoldingRegisters, 0, 2, buf)
	if err != nil || !equalSlices(buf, []uint16{0x1000, 0x1001}) {
		t.Fatalf("ReadRegisters: %v, %04X", err, buf)
	}
	if _, err := c.ReadRegisters(ctx, FuncReadCoils, 0, 2, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("ReadRegisters with fc 01: %v", err)
	}
}

func TestClientWrites(t *testing.T) {
	ctx := context.Background()
	b := newBank(5, 40)
	c := NewClient(b, 5, "led-5")
	if err := c.WriteSingleRegister(ctx, 2, 0xBEEF); err != nil || b.holding[2] != 0xBEEF {
		t.Fatalf("write single register: %v, %04X", err, b.holding[2])
	}
	if err := c.WriteMultipleRegisters(ctx, 10, []uint16{1, 2, 3}); err != nil || !equalSlices(b.holding[10:13], []uint16{1, 2, 3}) {
		t.Fatalf("write multiple registers: %v, %v", err, b.holding[10:13])
	}
	if err := c.WriteSingleCoil(ctx, 7, true); err != nil || !b.coils[7] {
		t.Fatalf("write single coil: %v", err)
	}
	if err := c.WriteSingleCoil(ctx, 7, false); err != nil || b.coils[7] {
		t.Fatalf("clear single coil: %v", err)
	}
	vals := []bool{true, false, true, true, false, false, true, true, true, false, true}
	if err := c.WriteMultipleCoils(ctx, 20, vals); err != nil || !equalSlices(b.coils[20:31], vals) {
		t.Fatalf("write multiple coils: %v, %v", err, b.coils[20:31])
	}
}

func TestClientBroadcast(t *testing.T) {
	ctx := context.Background()
	b := newBank(9, 10)
	c := NewClient(b, BroadcastUnit, "all")
	if err := c.WriteSingleRegister(ctx, 1, 42); err != nil {
		t.Fatalf("broadcast write: %v", err)
	}
	if b.holding[1] != 42 {
		t.Fatalf("broadcast write did not reach the unit")
	}
	_, err := c.ReadHoldingRegisters(ctx, 0, 1)
	if !errors.Is(err, ErrInvalidRequest) || err.Error() != "modbus: all (broadcast): read holding registers 0: reads cannot be broadcast (unit 0): invalid request" {
		t.Fatalf("broadcast read: %v", err)
	}
	if len(b.requests) != 1 {
		t.Fatalf("a refused request reached the bus: %d requests", len(b.requests))
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		setup  func(b *bank)
		call   func(c *Client) error
		target error
		msg    string
	}{
		{"crc", func(b *bank) { b.mangle = func(r []byte) []byte { r[3] ^= 0x40; return r } },
			func(c *Client) error { _, err := c.ReadHoldingRegisters(ctx, 0, 10); return err },
			ErrCRC, "modbus: bay-17 (unit 17): read holding registers 0..9: crc mismatch"},
		{"timeout", func(b *bank) { b.silent = true },
			func(c *Client) error { _, err := c.ReadHoldingRegisters(ctx, 0, 10); return err },
			drivers.ErrTimeout, "modbus: bay-17 (unit 17): read holding registers 0..9: no reply before the deadline"},
		{"exception", nil,
			func(c *Client) error { _, err := c.ReadInputRegisters(ctx, 45, 10); return err },
			ErrIllegalDataAddress, "modbus: bay-17 (unit 17): read input registers 45..54: device exception 0x02 (illegal data address)"},
		{"write exception", nil,
			func(c *Client) error { return c.WriteSingleRegister(ctx, 50, 1) },
			ErrIllegalDataAddress, "modbus: bay-17 (unit 17): write single register 50: device exception 0x02 (illegal data address)"},
		{"other unit answers", func(b *bank) {
			b.mangle = func(r []byte) []byte { r[0] = 18; return AppendCRC(r[:len(r)-2]) }
		},
			func(c *Client) error { _, err := c.ReadCoils(ctx, 0, 8); return err },
			ErrBadReply, "modbus: bay-17 (unit 17): read coils 0..7: reply comes from unit 18, want unit 17: bad reply"},
		{"wrong function in prefix", func(b *bank) {
			b.mangle = func(r []byte) []byte { r[1] = FuncReadInputRegisters; return AppendCRC(r[:len(r)-2]) }
		},
			func(c *Client) error { _, err := c.ReadHoldingRegisters(ctx, 0, 2); return err },
			ErrBadReply, "modbus: bay-17 (unit 17): read holding registers 0..1: reply has function code 0x04, want 0x03 or exception 0x83: bad reply"},
		{"bad echo", func(b *bank) {
			b.mangle = func(r []byte) []byte { r[5] ^= 1; return AppendCRC(r[:len(r)-2]) }
		},
			func(c *Client) error { return c.WriteSingleRegister(ctx, 3, 7) },
			ErrBadReply, "modbus: bay-17 (unit 17): write single register 3: reply echoes 00 03 00 06, want 00 03 00 07: bad reply"},
		{"limit", nil,
			func(c *Client) error { _, err := c.ReadHoldingRegisters(ctx, 0, 126); return err },
			ErrInvalidRequest, "modbus: bay-17 (unit 17): read holding registers 0..125: quantity 126 is out of range, want 1..125: invalid request"},
	}
	for _, tc := range cases {
		b := newBank(17, 50)
		if tc.setup != nil {
			tc.setup(b)
		}
		err := tc.call(NewClient(b, 17, "bay-17"))
		if !errors.Is(err, tc.target) || err.Error() != tc.msg {
			t.Errorf("%s:\n got  %v\n want %s", tc.name, err, tc.msg)
		}
	}
	// errors.As reaches the exception through the client's wrapping.
	_, err := NewClient(newBank(17, 5), 17, "bay-17").ReadHoldingRegisters(ctx, 4, 2)
	var ex *ExceptionError
	if !errors.As(err, &ex) || ex.Function != FuncReadHoldingRegisters || ex.Code != 2 {
		t.Fatalf("errors.As: %v", err)
	}
	// A cancelled context surfaces as such.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewClient(newBank(17, 5), 17, "bay-17").ReadHoldingRegisters(cctx, 0, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// corrupting answers like its bank but flips a bit of every reply, and
// counts the Resync calls the client makes.
type corrupting struct {
	*bank
	resyncs int
}

func (c *corrupting) Transact(ctx context.Context, req []byte, fl drivers.FrameLenFunc) ([]byte, error) {
	reply, err := c.bank.Transact(ctx, req, fl)
	if len(reply) > 3 {
		reply[3] ^= 0x10
	}
	return reply, err
}

func (c *corrupting) Resync() { c.resyncs++ }

// A reply that fails its CRC makes the client ask the bus to discard
// stale input before the next request; a good one does not.
func TestClientResyncsAfterBadReply(t *testing.T) {
	ctx := context.Background()
	bus := &corrupting{bank: newBank(9, 10)}
	c := NewClient(bus, 9, "meter-9")
	if _, err := c.ReadHoldingRegisters(ctx, 0, 2); !errors.Is(err, drivers.ErrCRC) {
		t.Fatalf("corrupted reply: %v, want a CRC error", err)
	}
	if bus.resyncs != 1 {
		t.Fatalf("%d resyncs after a bad reply, want 1", bus.resyncs)
	}
	plain := resyncCounter{Transactor: newBank(9, 10)}
	if _, err := NewClient(&plain, 9, "meter-9").ReadHoldingRegisters(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	if plain.n != 0 {
		t.Fatalf("%d resyncs after a good reply, want 0", plain.n)
	}
}

type resyncCounter struct {
	drivers.Transactor
	n int
}

func (r *resyncCounter) Resync() { r.n++ }
