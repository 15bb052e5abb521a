package gpio_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/payload"
)

func TestOpenMissingPinNamesIt(t *testing.T) {
	for _, name := range []string{"GPIO17", "gpiochip0:17"} {
		_, err := gpio.Open(name)
		if err == nil {
			t.Skipf("this machine has GPIO pin %s", name)
		}
		if !errors.Is(err, gpio.ErrNoPin) || !strings.Contains(err.Error(), name) {
			t.Errorf("Open(%q) = %v: want ErrNoPin naming the pin", name, err)
		}
	}
	// The registered driver fails the same way, naming the device.
	info, ok := drivers.Lookup("gpio")
	if !ok {
		t.Fatal("driver gpio not registered")
	}
	_, err := info.New(drivers.Spec{ID: "strike-1", Options: map[string]any{"pin": "GPIO17", "direction": "out"}}, drivers.Env{OpenPin: gpio.Open})
	if err == nil || !strings.Contains(err.Error(), "strike-1") || !strings.Contains(err.Error(), "GPIO17") {
		t.Errorf("driver on a missing pin: %v", err)
	}
}

// TestFactoryClaimsPinsThroughEnv: the registered factory opens nothing
// itself; it takes its line from Env.OpenPin, and refuses without one.
func TestFactoryClaimsPinsThroughEnv(t *testing.T) {
	info, _ := drivers.Lookup("gpio")
	p := vpin.New("loop", 4, nil)
	var asked []string
	env := drivers.Env{OpenPin: func(name string) (pgpio.PinIO, error) { asked = append(asked, name); return p, nil }}
	spec := drivers.Spec{ID: "loop-1", Driver: "gpio", Options: map[string]any{"pin": "loop", "direction": "in"}}
	dev, err := info.New(spec, env)
	if err != nil || len(asked) != 1 || asked[0] != "loop" {
		t.Fatalf("New = %v, asked for %v: want the pin from Env.OpenPin", err, asked)
	}
	dev.(drivers.Closer).Close()
	if _, err := info.New(spec, drivers.Env{}); err == nil {
		t.Error("built a gpio device without a pin opener")
	}
	spec.Options = map[string]any{"pin": "loop", "directon": "in"}
	if _, err := info.New(spec, env); err == nil || !strings.Contains(err.Error(), "did you mean direction?") {
		t.Errorf("typo in an option: %v", err)
	}
}

type event struct {
	on bool
	at time.Time
}

func TestInputDebounce(t *testing.T) {
	p := vpin.New("contact", 4, nil)
	in, err := gpio.NewInput(p, gpio.InputConfig{Name: "contact", ActiveLow: true, Debounce: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan event, 16)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, func(on bool, at time.Time) { events <- event{on, at} }) }()
	if e := <-events; e.on {
		t.Fatal("idle-high active-low line reported active")
	}
	// A bouncing close: five level changes within a few ms, ending low.
	first := time.Now()
	for _, l := range []pgpio.Level{pgpio.Low, pgpio.High, pgpio.Low, pgpio.High, pgpio.Low} {
		p.Drive(l)
		time.Sleep(500 * time.Microsecond)
	}
	select {
	case e := <-events:
		if !e.on || e.at.Before(first) {
			t.Errorf("got %+v, want active at or after the first edge", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	// A glitch (low→high→low… back to low) that ends where it began is no change.
	p.Drive(pgpio.High)
	p.Drive(pgpio.Low)
	time.Sleep(100 * time.Millisecond)
	p.Drive(pgpio.High)
	select {
	case e := <-events:
		if e.on {
			t.Errorf("after release got %+v, want inactive", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("release not reported")
	}
	select {
	case e := <-events:
		t.Errorf("extra change %+v: the bounce was reported", e)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}

func TestOutputPulseAndActiveLow(t *testing.T) {
	p := vpin.New("strike", 5, nil)
	o, err := gpio.NewOutput(p, gpio.OutputConfig{Name: "strike", ActiveLow: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Read() != pgpio.High {
		t.Fatal("active-low output not driven high (off) at start")
	}
	if err := o.Pulse(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !o.Active() || p.Read() != pgpio.Low {
		t.Fatal("pulse did not drive the active-low pin low")
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.Active() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h := p.History()
	if len(h) != 3 || h[1].Level != pgpio.Low || h[2].Level != pgpio.High {
		t.Fatalf("history %+v: want off, on, off", h)
	}
	if d := h[2].Time.Sub(h[1].Time); d < 50*time.Millisecond {
		t.Errorf("pulse lasted %v, want at least 50ms", d)
	}
	if err := o.Pulse(0); err == nil {
		t.Error("zero pulse accepted")
	}
}

func TestDriverWritesOutput(t *testing.T) {
	pins := map[string]*vpin.Pin{"relay": vpin.New("relay", 1, nil), "loop": vpin.New("loop", 2, nil)}
	open := func(name string) (pgpio.PinIO, error) { return pins[name], nil }
	out, err := gpio.NewDevice(drivers.Spec{ID: "barrier-1", Options: map[string]any{"pin": "relay", "direction": "out"}}, open)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := out.Write(ctx, "active", payload.Bool(true)); err != nil || pins["relay"].Read() != pgpio.High {
		t.Fatalf("write active: %v, level %v", err, pins["relay"].Read())
	}
	if err := out.Write(ctx, "colour", payload.Bool(true)); err == nil {
		t.Error("unknown point accepted")
	}
	in, err := gpio.NewDevice(drivers.Spec{ID: "loop-1", Options: map[string]any{"pin": "loop", "direction": "in", "active_low": true}}, open)
	if err != nil {
		t.Fatal(err)
	}
	pins["loop"].Drive(pgpio.Low)
	recs, _ := in.Poll(ctx)
	if len(recs) != 1 || !recs[0].Fields["active"].Bool() || recs[0].Tags["device"] != "loop-1" {
		t.Errorf("poll %+v: want active", recs)
	}
	if err := in.Write(ctx, "active", payload.Bool(true)); err == nil {
		t.Error("write to an input accepted")
	}
	if _, err := gpio.NewDevice(drivers.Spec{ID: "x", Options: map[string]any{"pin": "loop", "direction": "sideways"}}, open); err == nil {
		t.Error("bad direction accepted")
	}
}
