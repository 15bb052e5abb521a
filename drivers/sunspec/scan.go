package sunspec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
)

// Bases are the addresses (Modbus PDU addresses, as sent in the request) at
// which a SunSpec map may start, in the order discovery tries them.
var Bases = [...]uint16{40000, 0, 50000}

// The "SunS" marker that opens a SunSpec map.
const (
	Marker0 uint16 = 0x5375 // "Su"
	Marker1 uint16 = 0x6E53 // "nS"
	// EndID is the ID of the end model that closes the chain.
	EndID uint16 = 0xFFFF
)

// ErrNotSunSpec means the device answered but shows no SunSpec map at any
// of the Bases.
var ErrNotSunSpec = errors.New("no SunSpec map (SunS marker) at 40000, 0 or 50000")

// maxRead is the most registers one read transaction carries.
const maxRead = modbus.MaxReadRegisters

// ModelInfo is one model of a device's chain.
type ModelInfo struct {
	ID    uint16
	Addr  uint16 // address of its ID register
	Len   int    // L: registers after ID and L
	Name  string // from the definition, "" when the package has none
	Label string
}

// End is the address one past the model's last register.
func (m ModelInfo) End() int { return int(m.Addr) + m.Len + 2 }

// DeviceInfo is what discovery found on a unit.
type DeviceInfo struct {
	Unit   byte
	Base   uint16 // address of the SunS marker
	Models []ModelInfo
	// The common model's identity ("" when the device leaves it empty).
	Manufacturer, Model, Options, Version, Serial string
}

// Find returns the first model with id in the chain.
func (d *DeviceInfo) Find(id uint16) (ModelInfo, bool) {
	for _, m := range d.Models {
		if m.ID == id {
			return m, true
		}
	}
	return ModelInfo{}, false
}

// IDs lists the chain's model IDs in order ("1, 103, 160").
func (d *DeviceInfo) IDs() string {
	s := make([]string, len(d.Models))
	for i, m := range d.Models {
		s[i] = fmt.Sprint(m.ID)
	}
	return strings.Join(s, ", ")
}

// String renders the discovery result as the table `gatewayctl scan` prints.
func (d *DeviceInfo) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "unit %d: SunSpec map at %d\n", d.Unit, d.Base)
	for _, kv := range [][2]string{{"manufacturer", d.Manufacturer}, {"model", d.Model}, {"options", d.Options}, {"version", d.Version}, {"serial", d.Serial}} {
		if kv[1] != "" {
			fmt.Fprintf(&sb, "  %-13s %s\n", kv[0]+":", kv[1])
		}
	}
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tADDR\tLEN\tNAME")
	for _, m := range d.Models {
		name := m.Name
		if name == "" {
			name = "(unknown model)"
		} else if m.Label != "" {
			name += " (" + m.Label + ")"
		}
		fmt.Fprintf(tw, "  %d\t%d\t%d\t%s\n", m.ID, m.Addr, m.Len, name)
	}
	tw.Flush()
	return sb.String()
}

// Scan discovers the SunSpec map of unit on the bus t and reads its common
// model's identity. It is what `gatewayctl scan` runs per unit.
func Scan(ctx context.Context, t drivers.Transactor, unit byte) (*DeviceInfo, error) {
	c := modbus.NewClient(t, unit, fmt.Sprintf("unit-%d", unit))
	info, err := discover(ctx, c, Bases[:])
	if err != nil {
		return nil, err
	}
	m, ok := info.Find(1)
	if !ok {
		return info, nil
	}
	blocks, err := readModels(ctx, c, []ModelInfo{m})
	if err != nil {
		return nil, err
	}
	info.setIdentity(blocks[0])
	return info, nil
}

func (d *DeviceInfo) setIdentity(b *Block) {
	get := func(name string) string {
		s, _ := b.String(name)
		return s
	}
	d.Manufacturer, d.Model, d.Options, d.Version, d.Serial = get("Mn"), get("Md"), get("Opt"), get("Vr"), get("SN")
}

// discover finds the marker at one of bases and walks the model chain.
func discover(ctx context.Context, c *modbus.Client, bases []uint16) (*DeviceInfo, error) {
	var tried []string
	for _, base := range bases {
		// The marker and the first model's header in one read: a SunSpec
		// map always holds the common model after the marker.
		regs, err := c.ReadHoldingRegisters(ctx, base, 4)
		if err != nil {
			var exc *modbus.ExceptionError
			if modbus.IsGatewayAbsent(err) {
				// A Modbus gateway that cannot reach the unit answers
				// so at every base: the unit is absent, not another map.
				return nil, fmt.Errorf("sunspec: discovery at %d: %w", base, err)
			}
			if errors.As(err, &exc) {
				tried = append(tried, fmt.Sprintf("%d: %v", base, exc))
				continue
			}
			return nil, fmt.Errorf("sunspec: discovery: %w", err)
		}
		if regs[0] != Marker0 || regs[1] != Marker1 {
			tried = append(tried, fmt.Sprintf("%d: 0x%04X 0x%04X", base, regs[0], regs[1]))
			continue
		}
		info := &DeviceInfo{Unit: c.Unit(), Base: base}
		if err := info.walk(ctx, c, int(base)+2, regs[2:4]); err != nil {
			return nil, err
		}
		return info, nil
	}
	return nil, fmt.Errorf("sunspec: unit %d: %w (found %s)", c.Unit(), ErrNotSunSpec, strings.Join(tried, "; "))
}

// walk reads the model headers from addr until the end model; first is
// the header at addr when already read. ID and L are read together; when
// that read runs past the end of the device's map (an end model without
// L), ID is read alone.
func (d *DeviceInfo) walk(ctx context.Context, c *modbus.Client, addr int, first []uint16) error {
	for {
		if addr > 0xFFFF {
			return fmt.Errorf("sunspec: unit %d: model chain runs past register 65535 without an end model", d.Unit)
		}
		hdr, err := first, error(nil)
		first = nil
		if hdr == nil {
			hdr, err = c.ReadHoldingRegisters(ctx, uint16(addr), uint16(min(2, 0x10000-addr)))
		}
		if err != nil {
			if !errors.Is(err, modbus.ErrIllegalDataAddress) {
				return fmt.Errorf("sunspec: unit %d: model header at %d: %w", d.Unit, addr, err)
			}
			if hdr, err = c.ReadHoldingRegisters(ctx, uint16(addr), 1); err != nil {
				return fmt.Errorf("sunspec: unit %d: model id at %d: %w", d.Unit, addr, err)
			}
		}
		id := hdr[0]
		if id == EndID {
			return nil
		}
		if len(hdr) < 2 {
			return fmt.Errorf("sunspec: unit %d: model %d at %d has no length register", d.Unit, id, addr)
		}
		if id == 0 {
			return fmt.Errorf("sunspec: unit %d: model id 0 at %d: want a model id or 0xFFFF (end)", d.Unit, addr)
		}
		m := ModelInfo{ID: id, Addr: uint16(addr), Len: int(hdr[1])}
		if def, ok := Definition(id); ok {
			if _, err := def.Repeats(m.Len); err != nil {
				return fmt.Errorf("sunspec: unit %d: at %d: %w", d.Unit, addr, err)
			}
			m.Name, m.Label = def.Name, def.Label
		}
		if m.End() > 0x10000 {
			return fmt.Errorf("sunspec: unit %d: model %d at %d with length %d runs past register 65535", d.Unit, id, addr, m.Len)
		}
		d.Models = append(d.Models, m)
		addr = m.End()
	}
}

// span is a run of registers read in one go.
type span struct{ start, end int }

// mergeGap is the widest gap between two wanted models that a read bridges:
// 8 unwanted registers (16 bytes) cost less wire time than a transaction's
// own overhead (8 request bytes, 5 reply bytes and two t3.5 silences).
const mergeGap = 8

// plan covers models with the fewest reads of at most maxRead registers:
// models close together become one run, and a run is cut in maxRead pieces.
func plan(models []ModelInfo) []span {
	var runs []span
	for _, m := range models {
		s := span{int(m.Addr), m.End()}
		if n := len(runs); n > 0 && s.start-runs[n-1].end <= mergeGap && s.start >= runs[n-1].start {
			runs[n-1].end = max(runs[n-1].end, s.end)
			continue
		}
		runs = append(runs, s)
	}
	var out []span
	for _, r := range runs {
		for a := r.start; a < r.end; a += maxRead {
			out = append(out, span{a, min(a+maxRead, r.end)})
		}
	}
	return out
}

// readModels reads models (in chain order) with the fewest transactions and
// decodes each. A model whose ID or L changed since discovery is an error.
func readModels(ctx context.Context, c *modbus.Client, models []ModelInfo) ([]*Block, error) {
	spans := plan(models)
	type got struct {
		start int
		regs  []uint16
	}
	var runs []got
	for _, s := range spans {
		regs, err := c.ReadHoldingRegisters(ctx, uint16(s.start), uint16(s.end-s.start))
		if err != nil {
			return nil, fmt.Errorf("sunspec: unit %d: %w", c.Unit(), err)
		}
		if n := len(runs); n > 0 && runs[n-1].start+len(runs[n-1].regs) == s.start {
			runs[n-1].regs = append(runs[n-1].regs, regs...)
		} else {
			runs = append(runs, got{s.start, regs})
		}
	}
	out := make([]*Block, 0, len(models))
	for _, m := range models {
		var regs []uint16
		for _, r := range runs {
			if int(m.Addr) >= r.start && m.End() <= r.start+len(r.regs) {
				regs = r.regs[int(m.Addr)-r.start : m.End()-r.start : m.End()-r.start]
				break
			}
		}
		if regs == nil {
			return nil, fmt.Errorf("sunspec: unit %d: model %d at %d was not read", c.Unit(), m.ID, m.Addr)
		}
		if regs[0] != m.ID || int(regs[1]) != m.Len {
			return nil, fmt.Errorf("sunspec: unit %d: model at %d is now id %d length %d, discovery found id %d length %d: %w", c.Unit(), m.Addr, regs[0], regs[1], m.ID, m.Len, ErrMapChanged)
		}
		b, err := DecodeBlock(m.Addr, regs)
		if err != nil {
			return nil, fmt.Errorf("unit %d: %w", c.Unit(), err)
		}
		out = append(out, b)
	}
	return out, nil
}

// ErrMapChanged means a model is no longer where discovery found it (a
// firmware update, another device at the address): the device discovers
// again.
var ErrMapChanged = errors.New("the SunSpec map changed")
