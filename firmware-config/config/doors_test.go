package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const doorBase = `site: s
gateway: g
uplink: {brokers: [tcp://127.0.0.1:1883]}
outbox: {path: /tmp/x}
buses:
  - {name: rs485-1, port: /dev/ttyUSB0}
devices:
  - {id: reader-1, driver: osdp, bus: rs485-1, unit: 0}
  - {id: bay-1, driver: modbus, bus: rs485-1, unit: 1, profile: p}
`

func TestDoors(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(doorBase+`doors:
  - name: lobby
    readers: [reader-1]
    wiegand: {d0: GPIO5, d1: GPIO6}
    strike: GPIO17
    contact: {pin: GPIO22, active_low: true}
    unlock_time: 3s
`), SkipFileChecks())
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Doors[0]
	if d.Name != "lobby" || d.Readers[0] != "reader-1" || d.Wiegand.D1 != "GPIO6" || d.Strike.Name != "GPIO17" ||
		!d.Contact.ActiveLow || d.Exit != nil || d.UnlockTime != 3*time.Second || d.HeldTime != DefaultHeldTime {
		t.Fatalf("%+v", d)
	}
}

func TestDoorErrors(t *testing.T) {
	_, err := Parse("gw.yaml", []byte(doorBase+`doors:
  - name: lobby
    readers: [bay-1, nobody]
    strike: {pin: GPIO17}
    exit: GPIO17
  - name: lobby
    readers: [reader-1]
  - name: side
`), SkipFileChecks(), testRules())
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %v", err)
	}
	want := []string{
		`gw.yaml:12:15: doors[0].readers[0]: device "bay-1" has driver modbus (card readers on a door are osdp devices (Wiegand readers go under wiegand:))`,
		`gw.yaml:12:22: doors[0].readers[1]: no device "nobody" (name a device from the devices: list)`,
		`gw.yaml:14:11: doors[0].exit: pin "GPIO17" is already used as lobby strike (every GPIO line has one use)`,
		`gw.yaml:15:11: doors[1].name: duplicate door name "lobby"; first defined at line 11`,
		`gw.yaml:15:5: doors[1].strike: required key is missing (e.g. strike: {pin: GPIO17})`,
		`doors[2]: a door needs at least one reader`,
		`gw.yaml:17:5: doors[2].strike: required key is missing`,
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}
