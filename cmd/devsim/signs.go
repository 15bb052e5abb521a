package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display/displaysim"
)

// signBus is a guidance display per zone (one zone per bay bus) on a
// pseudo-terminal of their own behind DIR/ttySIGN. The gateway drives them:
// the written config has each as a guidance-display plugin device and a
// zone-guidance rule that writes each zone's free bays to its sign.
type signBus struct {
	zones    []signZone
	gate     int // address of the lot's entrance sign (with --lanes), or 0
	pair     *ptypair.Pair
	display  plugin
	guidance plugin
	wg       sync.WaitGroup
}

type signZone struct {
	zone     string
	addr     int
	capacity int
}

// plugin is a plugin binary and its SHA-256, as the config pins it.
type plugin struct{ path, sum string }

func pluginAt(flagName, path string) (plugin, error) {
	f, err := os.Open(path)
	if err != nil {
		return plugin{}, fmt.Errorf("%w: %s %s: %v", errUsage, flagName, path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return plugin{}, fmt.Errorf("%s %s: %w", flagName, path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return plugin{}, err
	}
	return plugin{path: abs, sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// startSigns starts the signs when both plugins are given; neither starts
// nothing, one alone is a usage error.
func startSigns(o *parkingOptions, buses []modbussim.BusInfo, logger *slog.Logger) (*signBus, error) {
	if o.signPlugin == "" && o.guidancePlugin == "" {
		return nil, nil
	}
	if o.signPlugin == "" || o.guidancePlugin == "" {
		return nil, fmt.Errorf("%w: --sign-plugin and --guidance-plugin go together", errUsage)
	}
	s := &signBus{}
	var err error
	if s.display, err = pluginAt("--sign-plugin", o.signPlugin); err != nil {
		return nil, err
	}
	if s.guidance, err = pluginAt("--guidance-plugin", o.guidancePlugin); err != nil {
		return nil, err
	}
	var addrs []int
	for i, b := range buses {
		s.zones = append(s.zones, signZone{zone: zone(i), addr: i + 1, capacity: b.LastBay - b.FirstBay + 1})
		addrs = append(addrs, i+1)
	}
	if o.lanes { // the entrance sign, which the lanes keep at the lot's free count
		s.gate = len(buses) + 1
		addrs = append(addrs, s.gate)
	}
	if s.pair, err = ptypair.Open(filepath.Join(o.dir, "ttySIGN")); err != nil {
		return nil, fmt.Errorf("signs: %w", err)
	}
	sim := displaysim.New(addrs...)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); sim.Serve(s.pair.Master) }() // ends when the pty closes
	logger.Info("sign bus plugged in", "path", s.pair.Path(), "signs", len(addrs))
	return s, nil
}

func (s *signBus) close() {
	if s == nil {
		return
	}
	s.pair.Close()
	s.wg.Wait()
}

// config renders the sign bus, the sign devices and the guidance rule.
func (s *signBus) config(o *parkingOptions) (bus, devices, rules string) {
	if s == nil {
		return "", "", ""
	}
	f := formats[o.format]
	bus = fmt.Sprintf("  - name: rs485-signs\n    port: %s\n    baud: %d\n    data_bits: 8\n    parity: %s\n    stop_bits: %d\n    timeout: 300ms\n",
		strconv.Quote(s.pair.Path()), o.baud, f.parity, f.stopBits)
	var d, z strings.Builder
	for _, sz := range s.zones {
		fmt.Fprintf(&d, "  - id: sign-%s\n    driver: plugin\n    bus: rs485-signs\n    unit: %d\n    poll: 2s\n    tags: {lot: %s, zone: %s}\n"+
			"    options: {path: %s, sha256: %q, config: {address: %d, max_count: 999}}\n",
			sz.zone, sz.addr, strconv.Quote(o.lot), sz.zone, strconv.Quote(s.display.path), s.display.sum, sz.addr)
		fmt.Fprintf(&z, "          %s: {sign: sign-%s, capacity: %d, lot: %s}\n", sz.zone, sz.zone, sz.capacity, strconv.Quote(o.lot))
	}
	if s.gate != 0 {
		fmt.Fprintf(&d, "  - id: sign-gate\n    driver: plugin\n    bus: rs485-signs\n    unit: %d\n    poll: 2s\n    tags: {lot: %s}\n"+
			"    options: {path: %s, sha256: %q, config: {address: %d, max_count: 999}}\n",
			s.gate, strconv.Quote(o.lot), strconv.Quote(s.display.path), s.display.sum, s.gate)
	}
	rules = fmt.Sprintf("rules:\n  - name: zone-guidance\n    trigger: {measurement: parking_bay}\n    plugin:\n      path: %s\n      sha256: %q\n      config:\n        zones:\n%s",
		strconv.Quote(s.guidance.path), s.guidance.sum, z.String())
	return bus, d.String(), rules
}
