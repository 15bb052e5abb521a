package command

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Limits of relay.pulse.
const (
	MinPulse = 10 * time.Millisecond
	MaxPulse = 60 * time.Second
)

// builtins registers the built-in commands whose hooks are set.
func (e *Executor) builtins() {
	e.handlers["ping"] = e.ping
	if e.opts.Devices != nil {
		e.handlers["device.write"] = e.deviceWrite
		e.handlers["relay.pulse"] = e.relayPulse
	}
	if e.opts.Reload != nil {
		e.handlers["config.reload"] = e.configReload
	}
	if e.opts.Rules != nil {
		e.handlers["rule.enable"] = func(a *Args) (Action, error) { return e.ruleSwitch(a, true) }
		e.handlers["rule.disable"] = func(a *Args) (Action, error) { return e.ruleSwitch(a, false) }
	}
}

// ping answers with the gateway's clock.
func (e *Executor) ping(a *Args) (Action, error) {
	if err := a.Err(); err != nil {
		return Action{}, err
	}
	return Action{Run: func(context.Context) (map[string]any, error) {
		return map[string]any{"time": e.clock.Now().UTC().Format(time.RFC3339Nano)}, nil
	}}, nil
}

func (e *Executor) writer(id string) (drivers.Writer, error) {
	if id == "" {
		return nil, errors.New("no device")
	}
	w, ok := e.opts.Devices(id)
	if !ok || w == nil {
		return nil, fmt.Errorf("device %q is not configured on this gateway or has no writable points", payload.Clip(id))
	}
	return w, nil
}

// deviceWrite: {"device", "point", "value"} → drivers.Writer.Write.
func (e *Executor) deviceWrite(a *Args) (Action, error) {
	dev, point, v := a.String("device"), a.String("point"), a.Value("value")
	if err := a.Err(); err != nil {
		return Action{}, err
	}
	w, err := e.writer(dev)
	if err != nil {
		return Action{}, err
	}
	return Action{Run: func(ctx context.Context) (map[string]any, error) {
		if err := w.Write(ctx, point, v); err != nil {
			return nil, fmt.Errorf("device %s: write %s = %v: %w", dev, point, v.Interface(), err)
		}
		return map[string]any{"device": dev, "point": point, "value": v.Interface()}, nil
	}}, nil
}

// relayPulse: {"device", "point", "on", "off", "duration"}: writes on, waits
// duration, writes off. The off value is written even when the wait was cut
// short, so that a relay is not left on.
func (e *Executor) relayPulse(a *Args) (Action, error) {
	dev, point := a.String("device"), a.String("point")
	on, off := a.Value("on"), a.Value("off")
	d := a.Duration("duration", MinPulse, MaxPulse)
	if err := a.Err(); err != nil {
		return Action{}, err
	}
	w, err := e.writer(dev)
	if err != nil {
		return Action{}, err
	}
	return Action{Hold: d, Run: func(ctx context.Context) (map[string]any, error) {
		result := map[string]any{"device": dev, "point": point, "on": on.Interface(), "off": off.Interface(), "duration_ms": d.Milliseconds()}
		onErr := w.Write(ctx, point, on)
		if onErr == nil {
			if err := clock.Sleep(ctx, e.clock, d); err != nil {
				onErr = fmt.Errorf("pulse cut short: %w", err)
			}
		}
		octx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			octx, cancel = context.WithTimeout(context.WithoutCancel(ctx), e.opts.Timeout)
			defer cancel()
		}
		offErr := w.Write(octx, point, off)
		switch {
		case onErr != nil && offErr != nil:
			return result, fmt.Errorf("device %s: pulse %s: on: %v; off: %w", dev, point, onErr, offErr)
		case onErr != nil:
			return result, fmt.Errorf("device %s: pulse %s: on (off written): %w", dev, point, onErr)
		case offErr != nil:
			return result, fmt.Errorf("device %s: pulse %s: off (the point may still be on): %w", dev, point, offErr)
		}
		return result, nil
	}}, nil
}

// configReload asks the Reload hook to validate and apply the configuration;
// a refused configuration's problems are listed in result "errors".
func (e *Executor) configReload(a *Args) (Action, error) {
	if err := a.Err(); err != nil {
		return Action{}, err
	}
	return Action{Run: func(ctx context.Context) (map[string]any, error) {
		err := e.opts.Reload(ctx)
		if err == nil {
			return map[string]any{"reloaded": true}, nil
		}
		list := errorList(err)
		return map[string]any{"reloaded": false, "errors": list},
			fmt.Errorf("configuration refused, the running one is kept: %d problem(s): %s", len(list), strings.Join(list, "; "))
	}}, nil
}

// errorList flattens joined errors and multi-line messages into lines.
func errorList(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				if e != nil {
					walk(e)
				}
			}
			return
		}
		for _, l := range strings.Split(err.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	walk(err)
	return out
}

func (e *Executor) ruleSwitch(a *Args, on bool) (Action, error) {
	name := a.String("rule")
	if err := a.Err(); err != nil {
		return Action{}, err
	}
	return Action{Run: func(context.Context) (map[string]any, error) {
		if err := e.opts.Rules.Enable(name, on); err != nil {
			return nil, fmt.Errorf("rule %q: %w", payload.Clip(name), err)
		}
		return map[string]any{"rule": name, "enabled": on}, nil
	}}, nil
}
