package modbussim

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
)

// Sizes gives the number of items in each of a unit's four tables.
type Sizes struct {
	Coils            int
	DiscreteInputs   int
	HoldingRegisters int
	InputRegisters   int
}

func (s Sizes) validate() error {
	for _, n := range []int{s.Coils, s.DiscreteInputs, s.HoldingRegisters, s.InputRegisters} {
		if n < 0 || n > 65536 {
			return fmt.Errorf("table size %d: want 0..65536", n)
		}
	}
	return nil
}

// Registers is a unit's data, handed to Update under the unit's lock.
type Registers struct {
	Coils            []bool
	DiscreteInputs   []bool
	HoldingRegisters []uint16
	InputRegisters   []uint16
}

// HoldingCheck vets a master's write of vals to the holding registers
// starting at addr, already known to be inside the table. It returns 0 to
// accept the write, or the exception to answer with (IllegalDataAddress for
// a read-only register, IllegalDataValue for a value out of range).
type HoldingCheck func(addr int, vals []uint16) Exception

// HoldingApplied runs after a master's accepted write to the holding
// registers, under the unit's lock, so a device model can update what
// derives from them.
type HoldingApplied func(r *Registers)

// Stats counts what a unit or a server saw. A unit counts the frames on its
// line; a server counts them once for the line.
type Stats struct {
	Requests      uint64 // good frames addressed to the unit (server: to any unit it serves), broadcasts included
	Broadcasts    uint64 // good broadcast frames (unit 0)
	Replies       uint64 // replies sent, exceptions included
	Exceptions    uint64 // exception replies sent
	CRCErrors     uint64 // frames that failed their CRC (unit: those that bore its address)
	Ignored       uint64 // good frames for other units (server: for units it does not serve, or offline ones)
	T35Violations uint64 // requests that began less than t3.5 after the previous frame on the line ended
	DroppedBytes  uint64 // server only: bytes dropped while resynchronising
}

type counters struct {
	requests, broadcasts, replies, exceptions, crcErrors, ignored, t35, dropped atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Requests:      c.requests.Load(),
		Broadcasts:    c.broadcasts.Load(),
		Replies:       c.replies.Load(),
		Exceptions:    c.exceptions.Load(),
		CRCErrors:     c.crcErrors.Load(),
		Ignored:       c.ignored.Load(),
		T35Violations: c.t35.Load(),
		DroppedBytes:  c.dropped.Load(),
	}
}

// Unit is one simulated Modbus slave on a Server's line. All its methods
// are safe to call while the server serves.
type Unit struct {
	id byte

	mu      sync.Mutex
	regs    Registers
	check   HoldingCheck
	applied HoldingApplied
	offline bool
	delay   time.Duration
	corrupt int

	c counters
}

func newUnit(id byte, sz Sizes) *Unit {
	return &Unit{id: id, regs: Registers{
		Coils:            make([]bool, sz.Coils),
		DiscreteInputs:   make([]bool, sz.DiscreteInputs),
		HoldingRegisters: make([]uint16, sz.HoldingRegisters),
		InputRegisters:   make([]uint16, sz.InputRegisters),
	}}
}

// ID is the unit's address on its line.
func (u *Unit) ID() byte { return u.id }

// Update runs fn with the unit's tables under its lock: a device model
// changes several registers at once without a master seeing half of it.
func (u *Unit) Update(fn func(r *Registers)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(&u.regs)
}

// SetHoldingHooks installs a device model's check of master writes to the
// holding registers and its reaction to them. Either may be nil.
func (u *Unit) SetHoldingHooks(check HoldingCheck, applied HoldingApplied) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.check, u.applied = check, applied
}

func rangeErr(u *Unit, table string, addr, n, size int) error {
	if addr < 0 || n < 0 || addr+n > size {
		return fmt.Errorf("modbussim: unit %d: %s %d..%d: outside the table of %d", u.id, table, addr, addr+n-1, size)
	}
	return nil
}

// ReadHolding returns n holding registers from addr.
func (u *Unit) ReadHolding(addr, n int) ([]uint16, error) {
	return readTable(u, "holding registers", addr, n, func(r *Registers) []uint16 { return r.HoldingRegisters })
}

// ReadInput returns n input registers from addr.
func (u *Unit) ReadInput(addr, n int) ([]uint16, error) {
	return readTable(u, "input registers", addr, n, func(r *Registers) []uint16 { return r.InputRegisters })
}

// ReadCoils returns n coils from addr.
func (u *Unit) ReadCoils(addr, n int) ([]bool, error) {
	return readTable(u, "coils", addr, n, func(r *Registers) []bool { return r.Coils })
}

// ReadDiscrete returns n discrete inputs from addr.
func (u *Unit) ReadDiscrete(addr, n int) ([]bool, error) {
	return readTable(u, "discrete inputs", addr, n, func(r *Registers) []bool { return r.DiscreteInputs })
}

// WriteHolding sets holding registers from addr, as the device itself
// would (no hooks run).
func (u *Unit) WriteHolding(addr int, vals ...uint16) error {
	return writeTable(u, "holding registers", addr, vals, func(r *Registers) []uint16 { return r.HoldingRegisters })
}

// WriteInput sets input registers from addr.
func (u *Unit) WriteInput(addr int, vals ...uint16) error {
	return writeTable(u, "input registers", addr, vals, func(r *Registers) []uint16 { return r.InputRegisters })
}

// WriteCoils sets coils from addr.
func (u *Unit) WriteCoils(addr int, vals ...bool) error {
	return writeTable(u, "coils", addr, vals, func(r *Registers) []bool { return r.Coils })
}

// WriteDiscrete sets discrete inputs from addr.
func (u *Unit) WriteDiscrete(addr int, vals ...bool) error {
	return writeTable(u, "discrete inputs", addr, vals, func(r *Registers) []bool { return r.DiscreteInputs })
}

func readTable[T any](u *Unit, name string, addr, n int, table func(*Registers) []T) ([]T, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := table(&u.regs)
	if err := rangeErr(u, name, addr, n, len(t)); err != nil {
		return nil, err
	}
	return append([]T(nil), t[addr:addr+n]...), nil
}

func writeTable[T any](u *Unit, name string, addr int, vals []T, table func(*Registers) []T) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := table(&u.regs)
	if err := rangeErr(u, name, addr, len(vals), len(t)); err != nil {
		return err
	}
	copy(t[addr:], vals)
	return nil
}

// SetOffline makes the unit silent (true), as if unpowered, or back (false).
// An offline unit neither answers nor executes broadcasts.
func (u *Unit) SetOffline(off bool) {
	u.mu.Lock()
	u.offline = off
	u.mu.Unlock()
}

// Offline reports whether the unit is silent.
func (u *Unit) Offline() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.offline
}

// SetDelay makes the unit slow: each reply leaves d later than the line's
// timing allows. Zero restores a prompt unit.
func (u *Unit) SetDelay(d time.Duration) {
	u.mu.Lock()
	u.delay = max(d, 0)
	u.mu.Unlock()
}

// CorruptNext sends the next n replies with a wrong CRC.
func (u *Unit) CorruptNext(n int) {
	u.mu.Lock()
	u.corrupt = max(n, 0)
	u.mu.Unlock()
}

// Stats returns the unit's counters.
func (u *Unit) Stats() Stats { return u.c.snapshot() }

// execute runs a request frame (CRC already checked) and appends the reply
// to dst. For a broadcast it applies writes and returns dst unchanged. It
// also returns the unit's reply delay. The caller has checked the unit is
// online.
func (u *Unit) execute(dst, frame []byte) ([]byte, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	broadcast := frame[0] == broadcastUnit
	start := len(dst)
	out, exc := u.executeLocked(dst, frame)
	if broadcast {
		return dst[:start], 0
	}
	if exc != 0 {
		out = appendException(dst[:start], u.id, frame[1], exc)
		u.c.exceptions.Add(1)
	}
	if u.corrupt > 0 {
		u.corrupt--
		out[len(out)-2] ^= 0xFF
		out[len(out)-1] ^= 0xFF
	}
	return out, u.delay
}

// executeLocked appends the normal reply (without CRC errors) or returns an
// exception code.
func (u *Unit) executeLocked(dst, f []byte) ([]byte, Exception) {
	fc := f[1]
	pdu := f[2 : len(f)-2]
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs:
		if len(pdu) != 4 {
			return dst, IllegalDataValue
		}
		bits := u.regs.Coils
		if fc == FuncReadDiscreteInputs {
			bits = u.regs.DiscreteInputs
		}
		addr, qty := int(be16(pdu)), int(be16(pdu[2:]))
		if qty < 1 || qty > maxReadBits {
			return dst, IllegalDataValue
		}
		if addr+qty > len(bits) {
			return dst, IllegalDataAddress
		}
		n := (qty + 7) / 8
		dst = append(dst, u.id, fc, byte(n))
		for i := 0; i < n; i++ {
			var b byte
			for j := 0; j < 8 && i*8+j < qty; j++ {
				if bits[addr+i*8+j] {
					b |= 1 << j
				}
			}
			dst = append(dst, b)
		}
		return modbus.AppendCRC(dst), 0
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(pdu) != 4 {
			return dst, IllegalDataValue
		}
		regs := u.regs.HoldingRegisters
		if fc == FuncReadInputRegisters {
			regs = u.regs.InputRegisters
		}
		addr, qty := int(be16(pdu)), int(be16(pdu[2:]))
		if qty < 1 || qty > maxReadRegs {
			return dst, IllegalDataValue
		}
		if addr+qty > len(regs) {
			return dst, IllegalDataAddress
		}
		dst = append(dst, u.id, fc, byte(2*qty))
		for _, v := range regs[addr : addr+qty] {
			dst = appendBE16(dst, v)
		}
		return modbus.AppendCRC(dst), 0
	case FuncWriteSingleCoil:
		if len(pdu) != 4 {
			return dst, IllegalDataValue
		}
		addr, v := int(be16(pdu)), be16(pdu[2:])
		if v != 0xFF00 && v != 0x0000 {
			return dst, IllegalDataValue
		}
		if addr >= len(u.regs.Coils) {
			return dst, IllegalDataAddress
		}
		u.regs.Coils[addr] = v == 0xFF00
		return append(dst, f...), 0
	case FuncWriteSingleRegister:
		if len(pdu) != 4 {
			return dst, IllegalDataValue
		}
		addr := int(be16(pdu))
		if addr >= len(u.regs.HoldingRegisters) {
			return dst, IllegalDataAddress
		}
		if e := u.writeHolding(addr, []uint16{be16(pdu[2:])}); e != 0 {
			return dst, e
		}
		return append(dst, f...), 0
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(pdu) < 5 {
			return dst, IllegalDataValue
		}
		addr, qty, bc := int(be16(pdu)), int(be16(pdu[2:])), int(pdu[4])
		data := pdu[5:]
		limit := maxWriteRegs
		if fc == FuncWriteMultipleCoils {
			limit = maxWriteBits
		}
		if qty < 1 || qty > limit || bc != writeByteCount(fc, uint16(qty)) || len(data) != bc {
			return dst, IllegalDataValue
		}
		if fc == FuncWriteMultipleCoils {
			if addr+qty > len(u.regs.Coils) {
				return dst, IllegalDataAddress
			}
			for i := 0; i < qty; i++ {
				u.regs.Coils[addr+i] = data[i/8]&(1<<(i%8)) != 0
			}
		} else {
			if addr+qty > len(u.regs.HoldingRegisters) {
				return dst, IllegalDataAddress
			}
			vals := make([]uint16, qty)
			for i := range vals {
				vals[i] = be16(data[2*i:])
			}
			if e := u.writeHolding(addr, vals); e != 0 {
				return dst, e
			}
		}
		dst = append(dst, u.id, fc)
		dst = appendBE16(dst, uint16(addr))
		dst = appendBE16(dst, uint16(qty))
		return modbus.AppendCRC(dst), 0
	}
	return dst, IllegalFunction
}

func (u *Unit) writeHolding(addr int, vals []uint16) Exception {
	if u.check != nil {
		if e := u.check(addr, vals); e != 0 {
			return e
		}
	}
	copy(u.regs.HoldingRegisters[addr:], vals)
	if u.applied != nil {
		u.applied(&u.regs)
	}
	return 0
}
