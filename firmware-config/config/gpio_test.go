package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/schema"
)

func TestGPIOSimulator(t *testing.T) {
	const base = "site: lot-a\ngateway: gw-01\nuplink: {brokers: [\"tcp://b.example:1883\"]}\noutbox: {path: /var/lib/luling/outbox}\n"
	c, err := Parse("/etc/luling/gw.yaml", []byte(base), catalog()...)
	if err != nil {
		t.Fatal(err)
	}
	if c.GPIO.Simulator != "" || strings.Contains(c.Summary(), "GPIO") {
		t.Errorf("no gpio section: simulator %q, summary %q", c.GPIO.Simulator, c.Summary())
	}
	c, err = Parse("/etc/luling/gw.yaml", []byte(base+"gpio: {simulator: run/gpio.sock}\n"), catalog()...)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join("/etc/luling", "run/gpio.sock")
	if c.GPIO.Simulator != want || !strings.HasSuffix(c.Summary(), "GPIO simulated at "+want) {
		t.Errorf("simulator %q, summary %q: want the path resolved against the file's folder", c.GPIO.Simulator, c.Summary())
	}
}

// GPIOLines lists the lines of devices (options the driver marks as GPIO
// lines) and doors once each, in file order.
func TestGPIOLines(t *testing.T) {
	src := `site: lot-a
gateway: gw-01
uplink: {brokers: ["tcp://b.example:1883"]}
outbox: {path: /var/lib/luling/outbox}
buses: [{name: rs485-1, port: /dev/ttyUSB1}]
devices:
  - {id: reader-1, driver: osdp, bus: rs485-1, unit: 1}
  - {id: loop-1, driver: gpio, options: {pin: GPIO23, direction: in}}
doors:
  - {name: lobby, readers: [reader-1], wiegand: {d0: GPIO5, d1: GPIO6}, strike: GPIO17, exit: {pin: GPIO27}}
`
	gpioRule := DriverRules(map[string]DriverRule{"gpio": {Options: schema.Schema{
		{Key: "pin", Kind: schema.String, GPIO: true}, {Key: "direction", Kind: schema.String}}}})
	c, err := Parse("gw.yaml", []byte(src), append(catalog(), KnownDrivers("gpio"), gpioRule)...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.GPIOLines, ","), "GPIO23,GPIO5,GPIO6,GPIO17,GPIO27"; got != want {
		t.Errorf("GPIOLines = %s, want %s", got, want)
	}
}
