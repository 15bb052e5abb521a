// Command testplugin is a device plugin for the host's tests. Its config
// key "mode" picks a behaviour: "echo" (one bus transaction per poll),
// "nobus" (a reading without bus I/O), "bulk" (100 readings), "hang"
// (Poll never returns), "panic" (Poll panics), "liar" (bad records among
// good ones), "log" (logs through the gateway), "events" (each poll queues
// an event, numbered like its reading). The environment variable
// LULING_TESTPLUGIN_PROTOCOL makes it speak only that protocol version.
package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	"github.com/luling-edge/luling/plugins/sdk"
)

type driver struct {
	env    sdk.Env
	mode   string
	n      atomic.Int64
	mu     sync.Mutex
	events []payload.Record
}

func (d *driver) Describe() sdk.Description {
	return sdk.Description{Name: "testplugin", Measurement: "test", Version: "0.0.1",
		Points: []sdk.Point{{Name: "level", Type: payload.TypeInt}}}
}

func (d *driver) Configure(_ context.Context, env sdk.Env) error {
	var cfg struct {
		Mode string `json:"mode"`
	}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	d.env, d.mode = env, cfg.Mode
	return nil
}

func (d *driver) record() payload.Record {
	return payload.Record{Measurement: "test", Tags: map[string]string{"device": d.env.Spec.ID},
		Fields: map[string]payload.Value{"n": payload.Int(d.n.Add(1)), "pid": payload.Int(int64(os.Getpid()))}}
}

func (d *driver) Poll(ctx context.Context) ([]payload.Record, error) {
	switch d.mode {
	case "hang":
		select {}
	case "panic":
		panic("poll exploded")
	case "nobus":
		return []payload.Record{d.record()}, nil
	case "events":
		r := d.record()
		d.mu.Lock()
		d.events = append(d.events, payload.Record{Measurement: "test_event", Tags: map[string]string{"device": d.env.Spec.ID},
			Fields: map[string]payload.Value{"n": r.Fields["n"], "state": payload.String("open")}})
		d.mu.Unlock()
		return []payload.Record{r}, nil
	case "bulk":
		out := make([]payload.Record, 100)
		for i := range out {
			out[i] = d.record()
		}
		return out, nil
	case "liar":
		return []payload.Record{
			{Measurement: "bad name!", Fields: map[string]payload.Value{"x": payload.Int(1)}},
			{Measurement: "test", Fields: map[string]payload.Value{"x": payload.Float(math.NaN())}},
			{Measurement: "parking_lot", Tags: map[string]string{"lot": "a"}, Fields: map[string]payload.Value{"free": payload.String("many")}},
			d.record(),
		}, nil
	case "log":
		d.env.Logger.With("unit", d.env.Spec.Unit).WithGroup("poll").Warn("hello from the plugin", "attempt", 3)
		return []payload.Record{d.record()}, nil
	}
	if d.env.Bus == nil {
		return nil, fmt.Errorf("no bus: %w", sdk.ErrBusDown)
	}
	reply, err := d.env.Bus.Transact(ctx, []byte("ping"), sdk.FixedLength(4))
	if err != nil {
		return nil, err
	}
	r := d.record()
	r.Fields["reply"] = payload.String(string(reply))
	return []payload.Record{r}, nil
}

func (d *driver) TakeEvents() []payload.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.events
	d.events = nil
	return out
}

func (d *driver) Write(_ context.Context, point string, v payload.Value) error {
	if point != "level" {
		return fmt.Errorf("write %q: unknown point: %w", point, sdk.ErrInvalid)
	}
	return nil
}

func main() {
	d := &driver{}
	if s := os.Getenv("LULING_TESTPLUGIN_PROTOCOL"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad LULING_TESTPLUGIN_PROTOCOL:", err)
			os.Exit(2)
		}
		hs := wire.Handshake
		hs.ProtocolVersion = uint(v)
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: hs,
			Plugins:         sdk.PluginSets(d)[wire.ProtocolV1],
			GRPCServer:      plugin.DefaultGRPCServer,
		})
		return
	}
	sdk.Serve(d)
}
