package config

import (
	"testing"
	"time"
)

func TestLanes(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(doorBase+`  - {id: relays-1, driver: modbus, bus: rs485-1, unit: 9, profile: p}
  - {id: tag-in, driver: osdp, bus: rs485-1, unit: 2}
lots:
  - {name: p1, capacity: 120, sign: {device: relays-1}}
lanes:
  - name: p1-in
    lot: p1
    direction: in
    barrier: {open: GPIO20, close: GPIO21, opened: GPIO22, closed: {pin: GPIO23, active_low: true}, motor_time: 4s}
    arming: GPIO24
    safety: GPIO25
    readers: [tag-in]
    visitors: auto
  - name: p1-out
    lot: p1
    direction: out
    barrier: {coil: {device: relays-1, point: barrier_2}}
    arming: GPIO26
    safety: GPIO27
    wiegand: {d0: GPIO5, d1: GPIO6}
    debounce: 100ms
    open_time: 1m
`), SkipFileChecks(), testRules())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Lots) != 1 || cfg.Lots[0].Capacity != 120 || cfg.Lots[0].Sign.Device != "relays-1" || cfg.Lots[0].Sign.Point != DefaultSignPoint {
		t.Fatalf("lots %+v", cfg.Lots)
	}
	in, out := cfg.Lanes[0], cfg.Lanes[1]
	if in.Name != "p1-in" || in.Lot != "p1" || in.Direction != "in" || in.Barrier.Open.Name != "GPIO20" || in.Barrier.Close.Name != "GPIO21" ||
		!in.Barrier.Closed.ActiveLow || in.Barrier.MotorTime != 4*time.Second || in.Barrier.Pulse != DefaultBarrierPulse ||
		in.Arming.Name != "GPIO24" || in.Safety.Name != "GPIO25" || in.Readers[0] != "tag-in" || in.Visitors != "auto" ||
		in.Debounce != DefaultLaneDebounce || in.OpenTime != DefaultLaneOpenTime {
		t.Fatalf("entry lane %+v", in)
	}
	if out.Barrier.Coil == nil || out.Barrier.Coil.Point != "barrier_2" || out.Barrier.Open != nil || out.Wiegand.D0 != "GPIO5" ||
		out.Visitors != DefaultLaneVisitors || out.Debounce != 100*time.Millisecond || out.OpenTime != time.Minute {
		t.Fatalf("exit lane %+v", out)
	}
	if got := len(cfg.GPIOLines); got != 10 {
		t.Fatalf("GPIO lines %v, want the 10 of the lanes", cfg.GPIOLines)
	}
	if s := cfg.Summary(); s != "site s, gateway g, 1 bus, 4 devices, 2 lanes" {
		t.Fatalf("summary %q", s)
	}
}
