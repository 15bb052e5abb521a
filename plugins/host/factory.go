package host

import (
	"fmt"
	"sort"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
)

// DriverName is the `driver` value of plugin devices in the gateway config.
const DriverName = "plugin"

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
	known := map[string]bool{"path": true, "sha256": true, "config": true, "call_timeout": true}
	var unknown []string
	for k := range spec.Options {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return o, fmt.Errorf("plugin %s: unknown option %q (want path, sha256, config, call_timeout)", spec.ID, unknown[0])
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
