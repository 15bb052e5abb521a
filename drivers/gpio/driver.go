package gpio

import (
	"context"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/payload"
)

// Measurement is the measurement of the driver's records.
const Measurement = "gpio"

func init() {
	drivers.Register(drivers.Info{
		Name:        "gpio",
		Description: "one GPIO line: an input (contact, button, loop detector, tamper) or an output (strike, siren, barrier relay)",
		Measurement: Measurement,
		New:         newDevice,
		Options:     Options,
		Example: `- id: loop-1
  driver: gpio
  options: {pin: GPIO17, direction: in, active_low: true}`,
	})
}

// Options are the keys of a gpio device's options.
var Options = schema.Schema{
	{Key: "pin", Kind: schema.String, Required: true, GPIO: true, Doc: "the line: chip:line such as gpiochip0:17, or a line name such as GPIO17"},
	{Key: "direction", Kind: schema.String, Required: true, OneOf: []string{"in", "out"}, Doc: "in (a contact, button or loop detector) or out (a relay)"},
	{Key: "active_low", Kind: schema.Bool, Default: "false", Doc: "the line is active when low"},
}

// Device is one GPIO line configured as a gateway device.
type Device struct {
	id   string
	tags map[string]string
	in   gpio.PinIn
	inv  bool
	out  *Output
}

var (
	_ drivers.Device = (*Device)(nil)
	_ drivers.Writer = (*Device)(nil)
	_ drivers.Closer = (*Device)(nil)
)

// newDevice reads options pin (chip:line or name), direction ("in" or
// "out") and active_low (bool), and claims the pin through env.OpenPin.
func newDevice(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
	if env.OpenPin == nil {
		return nil, fmt.Errorf("gpio: device %s: the gateway hands no GPIO lines to devices", spec.ID)
	}
	return NewDevice(spec, env.OpenPin)
}

// NewDevice builds a Device, finding its pin with open (Open, or a
// lookup of virtual pins in tests).
func NewDevice(spec drivers.Spec, open func(name string) (gpio.PinIO, error)) (*Device, error) {
	name, _ := spec.Options["pin"].(string)
	dir, _ := spec.Options["direction"].(string)
	activeLow := false
	if v, ok := spec.Options["active_low"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, fmt.Errorf("gpio: device %s: option active_low is %v: want true or false", spec.ID, v)
		}
		activeLow = b
	}
	if err := drivers.CheckOptions("gpio", spec, Options); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("gpio: device %s: missing option pin: want chip:line (gpiochip0:17) or a line name", spec.ID)
	}
	if dir != "in" && dir != "out" {
		return nil, fmt.Errorf("gpio: device %s: option direction %q: want in or out", spec.ID, dir)
	}
	p, err := open(name)
	if err != nil {
		return nil, fmt.Errorf("gpio: device %s: %w", spec.ID, err)
	}
	d := &Device{id: spec.ID, tags: map[string]string{"device": spec.ID}, inv: activeLow}
	for k, v := range spec.Tags {
		d.tags[k] = v
	}
	if dir == "in" {
		if err := p.In(gpio.PullUp, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("gpio: device %s: pin %s as input: %w", spec.ID, name, err)
		}
		d.in = p
		return d, nil
	}
	if d.out, err = NewOutput(p, OutputConfig{Name: spec.ID, ActiveLow: activeLow}); err != nil {
		return nil, err
	}
	return d, nil
}

// Poll reads the line: field active (bool).
func (d *Device) Poll(context.Context) ([]payload.Record, error) {
	var on bool
	if d.in != nil {
		on = (d.in.Read() == gpio.High) != d.inv
	} else {
		on = d.out.Active()
	}
	return []payload.Record{{Measurement: Measurement, Tags: d.tags, Fields: map[string]payload.Value{"active": payload.Bool(on)}}}, nil
}

// Write sets an output's point "active" (bool, or 0/1).
func (d *Device) Write(_ context.Context, point string, v payload.Value) error {
	if point != "active" {
		return fmt.Errorf("gpio: device %s: unknown point %q: want active", d.id, point)
	}
	if d.out == nil {
		return fmt.Errorf("gpio: device %s: point active is read-only on an input", d.id)
	}
	var on bool
	switch v.Type() {
	case payload.TypeBool:
		on = v.Bool()
	case payload.TypeInt:
		if i := v.Int(); i == 0 || i == 1 {
			on = i == 1
		} else {
			return fmt.Errorf("gpio: device %s: active = %d: want true, false, 0 or 1", d.id, i)
		}
	default:
		return fmt.Errorf("gpio: device %s: active is %s: want a bool", d.id, v.Type())
	}
	return d.out.Set(on)
}

// Close turns an output off.
func (d *Device) Close() error {
	if d.out != nil {
		return d.out.Close()
	}
	return nil
}

// Pulse exposes the output's Pulse (nil error only for outputs).
func (d *Device) Pulse(dur time.Duration) error {
	if d.out == nil {
		return fmt.Errorf("gpio: device %s: is an input", d.id)
	}
	return d.out.Pulse(dur)
}
