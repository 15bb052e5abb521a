package sunspec_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/payload"
)

// rig is one RS-485 line: a modbussim server on the master side of a pty,
// the gateway's bus arbiter on the slave side, both at the same baud rate
// with 8E1 (11-bit) characters.
type rig struct {
	srv *modbussim.Server
	bus *bus.Bus
}

func newRig(tb testing.TB, baud int) *rig {
	tb.Helper()
	pair, err := ptypair.Open(filepath.Join(tb.TempDir(), "ttyRS485"))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := modbussim.NewServer(modbussim.Config{Name: "pv-line", Line: modbussim.Line{Baud: baud, CharBits: 11}})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := bus.New(bus.Config{
		Name:       "rs485-pv",
		Port:       serialport.Config{Name: pair.Path(), Baud: baud, Parity: serialport.ParityEven},
		Timeout:    500 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
	}, bus.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, pair.Master); err != nil && ctx.Err() == nil {
			tb.Errorf("simulator: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := b.Run(ctx); err != nil {
			tb.Errorf("bus: %v", err)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
		pair.Close()
	})
	select {
	case <-b.Ready():
	case <-time.After(20 * time.Second):
		tb.Fatal("the bus's port did not open")
	}
	return &rig{srv: srv, bus: b}
}

func (r *rig) inverter(tb testing.TB, cfg sunspecsim.Config) *sunspecsim.Inverter {
	tb.Helper()
	inv, err := sunspecsim.New(r.srv, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return inv
}

// device builds the driver through the registry, as the gateway does.
func (r *rig) device(tb testing.TB, id string, unit int, opts map[string]any) *sunspec.Device {
	tb.Helper()
	info, ok := drivers.Lookup("sunspec")
	if !ok {
		tb.Fatal("driver sunspec is not registered")
	}
	d, err := info.New(drivers.Spec{ID: id, Driver: "sunspec", Bus: "rs485-pv", Unit: unit, Tags: map[string]string{"zone": "roof-b"}, Options: opts},
		drivers.Env{Bus: r.bus.Device(id), Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		tb.Fatal(err)
	}
	return d.(*sunspec.Device)
}

func poll(tb testing.TB, d *sunspec.Device) []payload.Record {
	tb.Helper()
	recs, err := d.Poll(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for i := range recs {
		if err := payload.CheckSchema(&recs[i]); err != nil {
			tb.Errorf("record %d: %v", i, err)
		}
	}
	return recs
}

// find returns the records of measurement m.
func find(recs []payload.Record, m string) []payload.Record {
	var out []payload.Record
	for _, r := range recs {
		if r.Measurement == m {
			out = append(out, r)
		}
	}
	return out
}
