package osdp_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
)

// rig is a simulated OSDP line on a pty, served by the gateway's bus
// arbiter as it serves /dev/ttyUSB0.
type rig struct {
	line *osdpsim.Line
	bus  *bus.Bus
	pair *ptypair.Pair
}

func newRig(tb testing.TB, baud int) *rig {
	tb.Helper()
	pair, err := ptypair.Open("")
	if err != nil {
		tb.Fatal(err)
	}
	line, err := osdpsim.New(osdpsim.Config{Name: "rs485-osdp", Baud: baud})
	if err != nil {
		tb.Fatal(err)
	}
	// The bus keeps OSDP's turnaround, as the gateway's does for a bus of
	// OSDP readers.
	b, err := bus.New(bus.Config{Name: "rs485-osdp", Port: serialport.Config{Name: pair.Path(), Baud: baud},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Turnaround: osdp.Turnaround(baud, osdpsim.BitsPerChar)},
		bus.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = b.Run(ctx) }()
	go func() { defer wg.Done(); _ = line.Serve(ctx, pair.Master) }()
	tb.Cleanup(func() {
		cancel()
		b.Close()
		pair.Close() // ends the simulator's read
		wg.Wait()
	})
	return &rig{line: line, bus: b, pair: pair}
}

func (r *rig) reader(tb testing.TB, cfg osdpsim.ReaderConfig) *osdpsim.Reader {
	tb.Helper()
	rd, err := r.line.Add(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return rd
}

func (r *rig) pd(tb testing.TB, name string, cfg osdp.Config) *osdp.PD {
	tb.Helper()
	cfg.Name = name
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := osdp.NewPD(r.bus.Device(name), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// online polls until the reader is up (the bus opens its port in the
// background) and returns the events seen on the way.
func online(tb testing.TB, p *osdp.PD) []osdp.Event {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var evs []osdp.Event
	for {
		err := p.Poll(context.Background())
		evs = append(evs, p.TakeEvents()...)
		if err == nil && p.Status().State == osdp.StateOnline {
			return evs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("reader not online: %v", err)
		}
		if errors.Is(err, drivers.ErrBusDown) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func kinds(evs []osdp.Event) []string {
	var k []string
	for _, e := range evs {
		k = append(k, e.Kind)
	}
	return k
}

// fixedRand gives the same bytes again and again.
type fixedRand []byte

func (f fixedRand) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = f[i%len(f)]
	}
	return len(b), nil
}

var _ io.Reader = fixedRand(nil)

// clock is a settable clock for the offline rule.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
