package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/internal/testenv"
)

// devsim gpio serves a config's lines: commands on stdin drive inputs the
// gateway sees, and what the gateway writes is logged.
func TestGPIOServesAConfigsLines(t *testing.T) {
	dir, err := os.MkdirTemp("", "devsim-gpio-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := `site: lot-a
gateway: gw-01
uplink: {brokers: ["tcp://b.example:1883"]}
outbox: {path: /var/lib/luling/outbox}
devices:
  - {id: loop-1, driver: gpio, options: {pin: GPIO23, direction: in}}
doors:
  - {name: lobby, wiegand: {d0: GPIO5, d1: GPIO6}, strike: "gpiochip0:17", contact: {pin: "gpiochip0:22", active_low: true}}
gpio: {simulator: gpio.sock}
`
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stdin, cmds := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- runGPIO(ctx, []string{"-config", path}, stdin, &out, &errOut) }()
	defer func() { cancel(); cmds.Close(); <-done }()
	testenv.WaitFor(t, 10*time.Second, "serving", func() bool { return strings.Contains(out.String(), "serving") })
	if want := "serving GPIO23, GPIO5, GPIO6, gpiochip0:17, gpiochip0:22 at " + filepath.Join(dir, "gpio.sock"); !strings.Contains(out.String(), want) {
		t.Fatalf("stdout %q: want %q", out.String(), want)
	}
	c := simgpio.Dial(filepath.Join(dir, "gpio.sock"), simgpio.ClientOptions{})
	defer c.Close()
	contact, err := c.Open("gpiochip0:22")
	if err != nil {
		t.Fatal(err)
	}
	strike, err := c.Open("gpiochip0:17")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(cmds, "gpiochip0:22 low\nnonsense\n")
	testenv.WaitFor(t, 10*time.Second, "the contact low", func() bool { return contact.Read() == gpio.Low })
	testenv.WaitFor(t, 10*time.Second, "the bad command refused", func() bool { return strings.Contains(out.String(), `"nonsense": want LINE high`) })
	if err := strike.Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the strike logged", func() bool {
		return strings.Contains(errOut.String(), `msg="the gateway set a line" line=gpiochip0:17 level=high`)
	})
}
