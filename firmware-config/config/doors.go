package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Door is one entry of the doors: list: the readers whose cards open it,
// its strike, door contact and exit button, decided on the gateway itself
// (package gateway/access). docs/access-control.md describes the wiring.
type Door struct {
	Name       string
	Readers    []string     // ids of osdp devices whose card reads open this door
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

func (d *decoder) doors(root *mapping, devices []Device) []Door {
	const hint = "each door is an entry starting with - name: ...; see docs/access-control.md"
	items, _ := d.sequence(root.get("doors"), "doors", hint)
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
			d.errorf(n, path, "every GPIO line has one use", "pin %q is already used as %s", pin, first)
			return
		}
		pins[pin] = what
	}
	for i, it := range items {
		p := fmt.Sprintf("doors[%d]", i)
		m := d.mapping(it, p, doorKeys)
		if m == nil {
			continue
		}
		door := Door{UnlockTime: DefaultUnlockTime, HeldTime: DefaultHeldTime, Line: m.node.Line}
		if n := m.get("name"); n == nil {
			d.missing(m, "name", "e.g. name: lobby")
		} else if s, ok := d.str(n, p+".name"); ok {
			if !ruleNameRe.MatchString(s) {
				d.errorf(n, p+".name", "1 to 64 of a-z, 0-9, _, . and -, starting with a letter or digit", "%q is not a valid door name", s)
			} else if first, dup := names[s]; dup {
				d.errorf(n, p+".name", "", "duplicate door name %q; first defined at line %d", s, first)
			} else {
				names[s] = n.Line
				door.Name = s
			}
		}
		if n := m.get("readers"); n != nil {
			list, _ := d.sequence(n, p+".readers", "a list of osdp device ids, e.g. readers: [reader-1]")
			for j, rn := range list {
				rp := fmt.Sprintf("%s.readers[%d]", p, j)
				id, ok := d.str(rn, rp)
				if !ok {
					continue
				}
				switch drv, known := driverOf[id]; {
				case !known:
					d.errorf(rn, rp, "name a device from the devices: list", "no device %q", id)
				case drv != "osdp":
					d.errorf(rn, rp, "card readers on a door are osdp devices (Wiegand readers go under wiegand:)", "device %q has driver %s", id, drv)
				default:
					if other, dup := readerDoor[id]; dup {
						d.errorf(rn, rp, "", "reader %q already opens door %q", id, other)
						continue
					}
					readerDoor[id] = door.Name
					door.Readers = append(door.Readers, id)
				}
			}
		}
		if n := m.get("wiegand"); n != nil {
			wm := d.mapping(n, p+".wiegand", wiegandKeys)
			w := &WiegandPins{}
			for _, k := range []struct {
				key string
				dst *string
			}{{"d0", &w.D0}, {"d1", &w.D1}} {
				kn := wm.get(k.key)
				if kn == nil {
					d.missing(wm, k.key, "e.g. wiegand: {d0: GPIO5, d1: GPIO6}")
					continue
				}
				if s, ok := d.str(kn, p+".wiegand."+k.key); ok {
					*k.dst = s
					usePin(kn, p+".wiegand."+k.key, s, door.Name+" wiegand "+k.key)
				}
			}
			if w.D0 != "" && w.D1 != "" {
				door.Wiegand = w
			}
		}
		if len(door.Readers) == 0 && door.Wiegand == nil && m.get("readers") == nil && m.get("wiegand") == nil {
			d.errorf(m.node, p, "add readers: [osdp device ids] or wiegand: {d0: ..., d1: ...}", "a door needs at least one reader")
		}
		if n := m.get("strike"); n == nil {
			d.missing(m, "strike", "e.g. strike: {pin: GPIO17}")
		} else if pin, ok := d.pin(n, p+".strike"); ok {
			door.Strike = pin
			usePin(n, p+".strike", pin.Name, door.Name+" strike")
		}
		for _, k := range []struct {
			key string
			dst **Pin
		}{{"contact", &door.Contact}, {"exit", &door.Exit}} {
			if n := m.get(k.key); n != nil {
				if pin, ok := d.pin(n, p+"."+k.key); ok {
					*k.dst = &pin
					usePin(n, p+"."+k.key, pin.Name, door.Name+" "+k.key)
				}
			}
		}
		if n := m.get("unlock_time"); n != nil {
			if v, ok := d.duration(n, p+".unlock_time", 500*time.Millisecond, 5*time.Minute); ok {
				door.UnlockTime = v
			}
		}
		if n := m.get("held_time"); n != nil {
			if v, ok := d.duration(n, p+".held_time", time.Second, time.Hour); ok {
				door.HeldTime = v
			}
		}
		out = append(out, door)
	}
	return out
}

// pin reads "GPIO17" or {pin: GPIO17, active_low: true}.
func (d *decoder) pin(n *yaml.Node, path string) (Pin, bool) {
	r := resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.str(r, path)
		if ok && s == "" {
			d.errorf(r, path, "e.g. GPIO17 or gpiochip0:17", "empty pin name")
			return Pin{}, false
		}
		return Pin{Name: s}, ok
	}
	m := d.mapping(n, path, pinKeys)
	if m == nil {
		return Pin{}, false
	}
	pn := m.get("pin")
	if pn == nil {
		d.missing(m, "pin", "e.g. pin: GPIO17")
		return Pin{}, false
	}
	s, ok := d.str(pn, path+".pin")
	if !ok {
		return Pin{}, false
	}
	if s == "" {
		d.errorf(pn, path+".pin", "e.g. GPIO17 or gpiochip0:17", "empty pin name")
		return Pin{}, false
	}
	pin := Pin{Name: s}
	if an := m.get("active_low"); an != nil {
		if v, ok := d.boolean(an, path+".active_low"); ok {
			pin.ActiveLow = v
		}
	}
	return pin, true
}
