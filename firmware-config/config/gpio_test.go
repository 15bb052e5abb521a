package config

import (
	"path/filepath"
	"strings"
	"testing"
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
