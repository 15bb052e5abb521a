package config

import (
	"fmt"
	"time"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

// Lot is one entry of the lots: list: a parking lot whose lanes count the
// vehicles in it (package gateway/lane). docs/parking.md describes it.
type Lot struct {
	Name     string
	Capacity int
	Sign     *Point // the entrance sign's writable point that shows the free count, or nil
	Line     int
}

// Point is a writable point of a configured device.
type Point struct {
	Device string
	Point  string
}

// Lane is one entry of the lanes: list: a barrier gate with its loops and
// readers, decided on the gateway (package gateway/lane).
type Lane struct {
	Name      string
	Lot       string // "" counts nothing
	Direction string // in or out
	Barrier   Barrier
	Arming    Pin
	Safety    Pin
	Debounce  time.Duration
	Readers   []string     // ids of card-reader devices whose reads open the lane
	Wiegand   *WiegandPins // a Wiegand reader on two GPIO lines, or nil
	Visitors  string       // deny or auto
	OpenTime  time.Duration
	Line      int
}

// Barrier is how a lane's barrier is driven: GPIO outputs (Open, and
// Close for a push-button controller) or a coil of a relay-board device,
// and its position inputs where it has them.
type Barrier struct {
	Open, Close    *Pin
	Pulse          time.Duration
	Coil           *Point
	Opened, Closed *Pin
	MotorTime      time.Duration
}

// Defaults of a lane.
const (
	DefaultLaneDebounce  = 50 * time.Millisecond
	DefaultLaneOpenTime  = 30 * time.Second
	DefaultMotorTime     = 6 * time.Second
	DefaultBarrierPulse  = 500 * time.Millisecond
	DefaultLaneVisitors  = "deny"
	DefaultSignPoint     = "free"
	DefaultCoilPointHint = "e.g. coil: {device: relays-1, point: barrier_1}"
)

var (
	lotKeys     = []string{"name", "capacity", "sign"}
	pointKeys   = []string{"device", "point"}
	laneKeys    = []string{"name", "lot", "direction", "barrier", "arming", "safety", "debounce", "readers", "wiegand", "visitors", "open_time"}
	barrierKeys = []string{"open", "close", "pulse", "coil", "opened", "closed", "motor_time"}
)

// lots reads the lots: list.
func (d *decoder) lots(root *yamlx.Map, devices []Device) []Lot {
	items, _ := d.Seq(root.Get("lots"), "lots", "each lot is an entry starting with - name: ...; see docs/parking.md")
	var out []Lot
	names := map[string]int{}
	for i, it := range items {
		p := fmt.Sprintf("lots[%d]", i)
		m := d.Map(it, p, lotKeys)
		if m == nil {
			continue
		}
		lot := Lot{Line: m.Node.Line, Name: d.uniqueName(m, p, "lot", names)}
		if n := m.Get("capacity"); n == nil {
			d.Missing(m, "capacity", "the lot's number of bays, e.g. capacity: 120")
		} else if v, ok := d.Int(n, p+".capacity", 1, 100000); ok {
			lot.Capacity = int(v)
		}
		if n := m.Get("sign"); n != nil {
			lot.Sign = d.point(n, p+".sign", devices, DefaultSignPoint, "e.g. sign: {device: sign-gate, point: free}")
		}
		if lot.Name != "" {
			out = append(out, lot)
		}
	}
	return out
}

// uniqueName reads an entry's required, unique name.
func (d *decoder) uniqueName(m *yamlx.Map, p, what string, names map[string]int) string {
	n := m.Get("name")
	if n == nil {
		d.Missing(m, "name", "e.g. name: north-"+what)
		return ""
	}
	s, ok := d.Str(n, p+".name")
	switch {
	case !ok:
		return ""
	case !payload.ValidDeviceID(s):
		d.Errorf(n, p+".name", "1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit", "%q is not a valid %s name", s, what)
		return ""
	case names[s] != 0:
		d.Errorf(n, p+".name", "", "duplicate %s name %q; first defined at line %d", what, s, names[s])
		return ""
	}
	names[s] = n.Line
	return s
}

// point reads {device: ID, point: NAME} naming a configured device.
func (d *decoder) point(n *yaml.Node, path string, devices []Device, defPoint, hint string) *Point {
	m := d.Map(n, path, pointKeys)
	if m == nil {
		return nil
	}
	pt := &Point{Point: defPoint}
	dn := m.Get("device")
	if dn == nil {
		d.Missing(m, "device", hint)
		return nil
	}
	id, ok := d.Str(dn, path+".device")
	if !ok {
		return nil
	}
	known := false
	for _, dev := range devices {
		known = known || dev.ID == id
	}
	if !known {
		d.Errorf(dn, path+".device", "name a device from the devices: list", "no device %q", id)
		return nil
	}
	pt.Device = id
	if pn := m.Get("point"); pn != nil {
		if s, ok := d.Str(pn, path+".point"); ok && s != "" {
			pt.Point = s
		} else if ok {
			d.Errorf(pn, path+".point", hint, "empty point name")
		}
	} else if defPoint == "" {
		d.Missing(m, "point", hint)
		return nil
	}
	return pt
}

// lanes reads the lanes: list. GPIO lines are used once across doors and
// lanes; a reader opens one door or lane.
func (d *decoder) lanes(root *yamlx.Map, c *Config) []Lane {
	items, _ := d.Seq(root.Get("lanes"), "lanes", "each lane is an entry starting with - name: ...; see docs/parking.md")
	if len(items) == 0 {
		return nil
	}
	driverOf := map[string]string{}
	for _, dev := range c.Devices {
		driverOf[dev.ID] = dev.Driver
	}
	lots := map[string]bool{}
	for _, l := range c.Lots {
		lots[l.Name] = true
	}
	pins := map[string]string{}
	readerOf := map[string]string{}
	for _, door := range c.Doors {
		for _, ln := range doorLines(door) {
			pins[ln] = "door " + door.Name
		}
		for _, r := range door.Readers {
			readerOf[r] = "door " + door.Name
		}
	}
	var out []Lane
	names := map[string]int{}
	for i, it := range items {
		p := fmt.Sprintf("lanes[%d]", i)
		m := d.Map(it, p, laneKeys)
		if m == nil {
			continue
		}
		ln := Lane{Line: m.Node.Line, Debounce: DefaultLaneDebounce, OpenTime: DefaultLaneOpenTime, Visitors: DefaultLaneVisitors}
		ln.Name = d.uniqueName(m, p, "lane", names)
		usePin := func(n *yaml.Node, path string, pin Pin, what string) {
			if first, dup := pins[pin.Name]; dup {
				d.Errorf(n, path, "every GPIO line has one use", "pin %q is already used by %s", pin.Name, first)
				return
			}
			pins[pin.Name] = "lane " + ln.Name + " " + what
		}
		reqPin := func(key, hint string) Pin {
			n := m.Get(key)
			if n == nil {
				d.Missing(m, key, hint)
				return Pin{}
			}
			pin, ok := d.pin(n, p+"."+key)
			if ok {
				usePin(n, p+"."+key, pin, key)
			}
			return pin
		}
		if n := m.Get("lot"); n != nil {
			if s, ok := d.Str(n, p+".lot"); ok {
				if !lots[s] {
					d.Errorf(n, p+".lot", "name a lot from the lots: list", "no lot %q", s)
				} else {
					ln.Lot = s
				}
			}
		}
		if n := m.Get("direction"); n == nil {
			d.Missing(m, "direction", "direction: in (an entry) or direction: out (an exit)")
		} else if s, ok := d.OneOf(n, p+".direction", []string{"in", "out"}); ok {
			ln.Direction = s
		}
		if n := m.Get("barrier"); n == nil {
			d.Missing(m, "barrier", "e.g. barrier: {open: GPIO20, closed: GPIO22}")
		} else {
			ln.Barrier = d.barrier(n, p+".barrier", c.Devices, usePin)
		}
		ln.Arming = reqPin("arming", "the loop before the barrier, e.g. arming: GPIO24")
		ln.Safety = reqPin("safety", "the loop under the barrier, e.g. safety: GPIO25")
		if n := m.Get("debounce"); n != nil {
			if v, ok := d.Duration(n, p+".debounce", time.Millisecond, 2*time.Second); ok {
				ln.Debounce = v
			}
		}
		ln.Readers = d.readers(m, p, "lane", driverOf, func(id string) string {
			if other := readerOf[id]; other != "" {
				return other
			}
			readerOf[id] = "lane " + ln.Name
			return ""
		})
		ln.Wiegand = d.wiegand(m, p, func(n *yaml.Node, path, pin, key string) {
			usePin(n, path, Pin{Name: pin}, "wiegand "+key)
		})
		if n := m.Get("visitors"); n != nil {
			if s, ok := d.OneOf(n, p+".visitors", []string{"deny", "auto"}); ok {
				ln.Visitors = s
			}
		}
		if n := m.Get("open_time"); n != nil {
			if v, ok := d.Duration(n, p+".open_time", time.Second, 10*time.Minute); ok {
				ln.OpenTime = v
			}
		}
		out = append(out, ln)
	}
	return out
}

// barrier reads a lane's barrier: GPIO outputs or a coil, and position inputs.
func (d *decoder) barrier(n *yaml.Node, p string, devices []Device, usePin func(*yaml.Node, string, Pin, string)) Barrier {
	b := Barrier{Pulse: DefaultBarrierPulse, MotorTime: DefaultMotorTime}
	m := d.Map(n, p, barrierKeys)
	if m == nil {
		return b
	}
	for _, k := range []struct {
		key string
		dst **Pin
	}{{"open", &b.Open}, {"close", &b.Close}, {"opened", &b.Opened}, {"closed", &b.Closed}} {
		if kn := m.Get(k.key); kn != nil {
			if pin, ok := d.pin(kn, p+"."+k.key); ok {
				*k.dst = &pin
				usePin(kn, p+"."+k.key, pin, "barrier "+k.key)
			}
		}
	}
	if kn := m.Get("coil"); kn != nil {
		b.Coil = d.point(kn, p+".coil", devices, "", DefaultCoilPointHint)
	}
	switch {
	case m.Get("open") == nil && m.Get("coil") == nil:
		d.Errorf(m.Node, p, "open: GPIO20 (a GPIO output), or "+DefaultCoilPointHint, "a barrier needs an open output or a coil")
	case m.Get("open") != nil && m.Get("coil") != nil:
		d.Errorf(m.Get("coil"), p+".coil", "drive the barrier by GPIO (open, close) or by a coil, not both", "both open and coil given")
	case m.Get("close") != nil && m.Get("open") == nil:
		d.Errorf(m.Get("close"), p+".close", "a close output goes with an open output", "close without open")
	}
	if kn := m.Get("pulse"); kn != nil {
		if v, ok := d.Duration(kn, p+".pulse", 50*time.Millisecond, 10*time.Second); ok {
			b.Pulse = v
		}
	}
	if kn := m.Get("motor_time"); kn != nil {
		if v, ok := d.Duration(kn, p+".motor_time", 100*time.Millisecond, time.Minute); ok {
			b.MotorTime = v
		}
	}
	return b
}

// doorLines are the GPIO lines a door uses.
func doorLines(door Door) []string {
	var out []string
	if door.Wiegand != nil {
		out = append(out, door.Wiegand.D0, door.Wiegand.D1)
	}
	out = append(out, door.Strike.Name)
	for _, p := range []*Pin{door.Contact, door.Exit} {
		if p != nil {
			out = append(out, p.Name)
		}
	}
	return out
}

// laneLines are the GPIO lines a lane uses.
func laneLines(ln Lane) []string {
	var out []string
	if ln.Wiegand != nil {
		out = append(out, ln.Wiegand.D0, ln.Wiegand.D1)
	}
	for _, p := range []*Pin{ln.Barrier.Open, ln.Barrier.Close, ln.Barrier.Opened, ln.Barrier.Closed, &ln.Arming, &ln.Safety} {
		if p != nil {
			out = append(out, p.Name)
		}
	}
	return out
}
