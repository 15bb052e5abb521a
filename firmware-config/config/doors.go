package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

// Door is one entry of the doors: list: the readers whose cards open it,
// its strike, door contact and exit button, decided on the gateway itself
// (package gateway/access). docs/access-control.md describes the wiring.
type Door struct {
	Name       string
	Readers    []string     // ids of card-reader devices (osdp) whose card reads open this door
	Wiegand    *WiegandPins // a Wiegand reader on two GPIO lines, or nil
	Strike     Pin          // the lock output
	Contact    *Pin         // door contact input (active = open), or nil
	Exit       *Pin         // exit button input (active = pressed), or nil
	UnlockTime time.Duration
	HeldTime   time.Duration
	Line       int
}

// Pin is a GPIO line by name (GPIO17) or chip and line (gpiochip0:17).
type Pin struct {
	Name      string
	ActiveLow bool
}

// WiegandPins are a Wiegand reader's data lines.
type WiegandPins struct {
	D0, D1 string
}

// Defaults of a door.
const (
	DefaultUnlockTime = 5 * time.Second
	DefaultHeldTime   = 30 * time.Second
)

var (
	doorKeys    = []string{"name", "readers", "wiegand", "strike", "contact", "exit", "unlock_time", "held_time"}
	pinKeys     = []string{"pin", "active_low"}
	wiegandKeys = []string{"d0", "d1"}
)

func (d *decoder) doors(root *yamlx.Map, devices []Device) []Door {
	const hint = "each door is an entry starting with - name: ...; see docs/access-control.md"
	items, _ := d.Seq(root.Get("doors"), "doors", hint)
	driverOf := map[string]string{}
	for _, dev := range devices {
		driverOf[dev.ID] = dev.Driver
	}
	var out []Door
	names := map[string]int{}
	readerDoor := map[string]string{}
	pins := map[string]string{}
	usePin := func(n *yaml.Node, path, pin, what string) {
		if first, dup := pins[pin]; dup {
			d.Errorf(n, path, "every GPIO line has one use", "pin %q is already used as %s", pin, first)
			return
		}
		pins[pin] = what
	}
	for i, it := range items {
		p := fmt.Sprintf("doors[%d]", i)
		m := d.Map(it, p, doorKeys)
		if m == nil {
			continue
		}
		door := Door{UnlockTime: DefaultUnlockTime, HeldTime: DefaultHeldTime, Line: m.Node.Line}
		if n := m.Get("name"); n == nil {
			d.Missing(m, "name", "e.g. name: lobby")
		} else if s, ok := d.Str(n, p+".name"); ok {
			if !payload.ValidDeviceID(s) {
				d.Errorf(n, p+".name", "1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit", "%q is not a valid door name", s)
			} else if first, dup := names[s]; dup {
				d.Errorf(n, p+".name", "", "duplicate door name %q; first defined at line %d", s, first)
			} else {
				names[s] = n.Line
				door.Name = s
			}
		}
		door.Readers = d.readers(m, p, "door", driverOf, func(id string) string {
			if other, dup := readerDoor[id]; dup {
				return fmt.Sprintf("door %q", other)
			}
			readerDoor[id] = door.Name
			return ""
		})
		door.Wiegand = d.wiegand(m, p, func(n *yaml.Node, path, pin, key string) {
			usePin(n, path, pin, door.Name+" wiegand "+key)
		})
		if len(door.Readers) == 0 && door.Wiegand == nil && m.Get("readers") == nil && m.Get("wiegand") == nil {
			d.Errorf(m.Node, p, "add readers: [card-reader device ids] or wiegand: {d0: ..., d1: ...}", "a door needs at least one reader")
		}
		if n := m.Get("strike"); n == nil {
			d.Missing(m, "strike", "e.g. strike: {pin: GPIO17}")
		} else if pin, ok := d.pin(n, p+".strike"); ok {
			door.Strike = pin
			usePin(n, p+".strike", pin.Name, door.Name+" strike")
		}
		for _, k := range []struct {
			key string
			dst **Pin
		}{{"contact", &door.Contact}, {"exit", &door.Exit}} {
			if n := m.Get(k.key); n != nil {
				if pin, ok := d.pin(n, p+"."+k.key); ok {
					*k.dst = &pin
					usePin(n, p+"."+k.key, pin.Name, door.Name+" "+k.key)
				}
			}
		}
		if n := m.Get("unlock_time"); n != nil {
			if v, ok := d.Duration(n, p+".unlock_time", 500*time.Millisecond, 5*time.Minute); ok {
				door.UnlockTime = v
			}
		}
		if n := m.Get("held_time"); n != nil {
			if v, ok := d.Duration(n, p+".held_time", time.Second, time.Hour); ok {
				door.HeldTime = v
			}
		}
		out = append(out, door)
	}
	return out
}

// pin reads "GPIO17" or {pin: GPIO17, active_low: true}.
func (d *decoder) pin(n *yaml.Node, path string) (Pin, bool) {
	r := yamlx.Resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.Str(r, path)
		if ok && s == "" {
			d.Errorf(r, path, "e.g. GPIO17 or gpiochip0:17", "empty pin name")
			return Pin{}, false
		}
		return Pin{Name: s}, ok
	}
	m := d.Map(n, path, pinKeys)
	if m == nil {
		return Pin{}, false
	}
	pn := m.Get("pin")
	if pn == nil {
		d.Missing(m, "pin", "e.g. pin: GPIO17")
		return Pin{}, false
	}
	s, ok := d.Str(pn, path+".pin")
	if !ok {
		return Pin{}, false
	}
	if s == "" {
		d.Errorf(pn, path+".pin", "e.g. GPIO17 or gpiochip0:17", "empty pin name")
		return Pin{}, false
	}
	pin := Pin{Name: s}
	if an := m.Get("active_low"); an != nil {
		if v, ok := d.Bool(an, path+".active_low"); ok {
			pin.ActiveLow = v
		}
	}
	return pin, true
}

// readers reads an entry's readers: list of card-reader device ids; taken
// says what already opens with a reader ("" when free, and takes it).
func (d *decoder) readers(m *yamlx.Map, p, what string, driverOf map[string]string, taken func(id string) string) []string {
	n := m.Get("readers")
	if n == nil {
		return nil
	}
	var out []string
	list, _ := d.Seq(n, p+".readers", "a list of card-reader device ids, e.g. readers: [reader-1]")
	for j, rn := range list {
		rp := fmt.Sprintf("%s.readers[%d]", p, j)
		id, ok := d.Str(rn, rp)
		if !ok {
			continue
		}
		switch drv, known := driverOf[id]; {
		case !known:
			d.Errorf(rn, rp, "name a device from the devices: list", "no device %q", id)
		case !d.readsCards(drv):
			d.Errorf(rn, rp, fmt.Sprintf("card readers on a %s are %s devices (Wiegand readers go under wiegand:)", what, d.cardDrivers()), "device %q has driver %s", id, drv)
		default:
			if other := taken(id); other != "" {
				d.Errorf(rn, rp, "", "reader %q already opens %s", id, other)
				continue
			}
			out = append(out, id)
		}
	}
	return out
}

// wiegand reads an entry's wiegand: {d0, d1}; use claims each line.
func (d *decoder) wiegand(m *yamlx.Map, p string, use func(n *yaml.Node, path, pin, key string)) *WiegandPins {
	n := m.Get("wiegand")
	if n == nil {
		return nil
	}
	wm := d.Map(n, p+".wiegand", wiegandKeys)
	w := &WiegandPins{}
	for _, k := range []struct {
		key string
		dst *string
	}{{"d0", &w.D0}, {"d1", &w.D1}} {
		kn := wm.Get(k.key)
		if kn == nil {
			d.Missing(wm, k.key, "e.g. wiegand: {d0: GPIO5, d1: GPIO6}")
			continue
		}
		if s, ok := d.Str(kn, p+".wiegand."+k.key); ok {
			*k.dst = s
			use(kn, p+".wiegand."+k.key, s, k.key)
		}
	}
	if w.D0 == "" || w.D1 == "" {
		return nil
	}
	return w
}

// readsCards reports whether the devices of a driver read cards; a driver
// the loader has no rule for may.
func (d *decoder) readsCards(driver string) bool {
	r, ok := d.opts.rules[driver]
	return !ok || r.CardReader
}

// cardDrivers names the drivers whose devices read cards.
func (d *decoder) cardDrivers() string {
	var out []string
	for name, r := range d.opts.rules {
		if r.CardReader {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return "card-reading"
	}
	sort.Strings(out)
	return strings.Join(out, " or ")
}
