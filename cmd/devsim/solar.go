package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
	"github.com/luling-edge/luling/internal/ptypair"
)

// solarBus is the inverters' own RS-485 bus: SunSpec inverters (units 1..n)
// on a pseudo-terminal behind DIR/ttyPV, following the clear-sky day curve
// of the wall clock, so that the solar view shows the power of the hour.
type solarBus struct {
	n    int
	pair *ptypair.Pair
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// startSolar starts n inverters; n 0 starts nothing.
func startSolar(o *parkingOptions, n int, logger *slog.Logger) (*solarBus, error) {
	if n == 0 {
		return nil, nil
	}
	f := formats[o.format]
	srv, err := modbussim.NewServer(modbussim.Config{Name: "rs485-pv", Line: modbussim.Line{Baud: o.baud, CharBits: f.charBits}, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("solar: %w", err)
	}
	s := &solarBus{n: n}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	var invs []*sunspecsim.Inverter
	for i := 1; i <= n; i++ {
		inv, err := sunspecsim.New(srv, sunspecsim.Config{Unit: byte(i), Base: 40000, RatedPower: float64(3000 + 1000*i),
			Serial: fmt.Sprintf("DEMO-%04d", i), Start: time.Now(), Energy: float64(2_000_000 * i)})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("solar: inverter %d: %w", i, err)
		}
		invs = append(invs, inv)
	}
	if s.pair, err = ptypair.Open(filepath.Join(o.dir, "ttyPV")); err != nil {
		cancel()
		return nil, fmt.Errorf("solar: %w", err)
	}
	for _, inv := range invs {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); inv.Run(ctx, time.Second, 1) }()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ctx, s.pair.Master); err != nil && ctx.Err() == nil {
			logger.Warn("solar bus stopped serving", "err", err)
		}
	}()
	logger.Info("solar bus plugged in", "path", s.pair.Path(), "inverters", n)
	return s, nil
}

// close stops the inverters and the bus.
func (s *solarBus) close() {
	if s == nil {
		return
	}
	s.stop()
	s.pair.Close()
	s.wg.Wait()
}

// config renders the solar bus and its devices for the gateway config:
// the bus entry and the device entries, in that order.
func (s *solarBus) config(o *parkingOptions) (bus, devices string) {
	if s == nil {
		return "", ""
	}
	f := formats[o.format]
	bus = fmt.Sprintf("  - name: rs485-pv\n    port: %s\n    baud: %d\n    data_bits: 8\n    parity: %s\n    stop_bits: %d\n    timeout: 300ms\n",
		strconv.Quote(s.pair.Path()), o.baud, f.parity, f.stopBits)
	var b strings.Builder
	for i := 1; i <= s.n; i++ {
		fmt.Fprintf(&b, "  - id: inv-%d\n    driver: sunspec\n    bus: rs485-pv\n    unit: %d\n    poll: 5s\n    tags: {roof: r%d}\n", i, i, i)
	}
	return bus, b.String()
}
