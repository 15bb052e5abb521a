package host

import (
	"fmt"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/plugins/hostspec"
)

// DriverName, DriverOptions and Example are hostspec's, kept here for
// callers that already link the host.
const DriverName = hostspec.DriverName

// DriverOptions are the keys of a plugin device's options.
var DriverOptions = hostspec.DriverOptions

// Example is a plugin device entry, for docs and tests.
const Example = hostspec.Example

// Factory is a drivers.Factory for plugin devices. It reads the device's
// options:
//
//	path          the plugin program (required)
//	sha256        its SHA-256, 64 hex digits (required)
//	config        the plugin's own settings, a map (optional)
//	call_timeout  a duration such as "5s" (optional)
//
// and returns a *Plugin that starts at the first poll. The gateway
// registers it with
//
//	drivers.Register(drivers.Info{Name: host.DriverName, Description: "...", New: host.Factory})
func Factory(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
	o, err := OptionsFromSpec(spec, env)
	if err != nil {
		return nil, err
	}
	return New(o)
}

// OptionsFromSpec turns a device's config into Options; errors name the
// device and the option. env.Logger, when set, is taken to carry the
// device attribute already, as the gateway's per-device loggers do.
func OptionsFromSpec(spec drivers.Spec, env drivers.Env) (Options, error) {
	o := Options{Name: spec.ID, Spec: spec, Bus: env.Bus, Logger: env.Logger, Clock: envClock(env.Now), loggerNamesDevice: env.Logger != nil}
	if err := drivers.CheckOptions(DriverName, spec, DriverOptions); err != nil {
		return o, err
	}
	str := func(key string) (string, error) {
		v, ok := spec.Options[key]
		if !ok {
			return "", fmt.Errorf("plugin %s: option %q is missing", spec.ID, key)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("plugin %s: option %q is a %T, want a string", spec.ID, key, v)
		}
		return s, nil
	}
	var err error
	if o.Path, err = str("path"); err != nil {
		return o, err
	}
	if o.SHA256, err = str("sha256"); err != nil {
		return o, err
	}
	if v, ok := spec.Options["config"]; ok && v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			return o, fmt.Errorf("plugin %s: option \"config\" is a %T, want a map", spec.ID, v)
		}
		o.Config = m
	}
	if v, ok := spec.Options["call_timeout"]; ok {
		s, isStr := v.(string)
		d, err := time.ParseDuration(s)
		if !isStr || err != nil || d <= 0 {
			return o, fmt.Errorf("plugin %s: option \"call_timeout\" is %v, want a positive duration such as \"5s\"", spec.ID, v)
		}
		o.CallTimeout = d
	}
	return o, nil
}

// envClock is a driver Env's Now as the host's clock: the host reads the
// time through it (back-off, event times) and sets no timers on it.
func envClock(now func() time.Time) clock.Clock {
	if now == nil {
		return clock.Real()
	}
	return nowClock{Clock: clock.Real(), now: now}
}

type nowClock struct {
	clock.Clock // timers: the real clock
	now         func() time.Time
}

func (c nowClock) Now() time.Time                  { return c.now() }
func (c nowClock) Since(t time.Time) time.Duration { return c.now().Sub(t) }
func (c nowClock) Until(t time.Time) time.Duration { return t.Sub(c.now()) }
