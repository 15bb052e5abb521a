package lane_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/gateway/lane"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// coilWriter is a relay board's writable points.
type coilWriter struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (w *coilWriter) Write(_ context.Context, point string, v payload.Value) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.writes = append(w.writes, point+"="+v.String())
	return nil
}

func TestCoilBarrier(t *testing.T) {
	w := &coilWriter{}
	c := &lane.Coil{Device: "relays-1", Point: "barrier_2", W: w}
	if err := c.Move(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if err := c.Move(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(w.writes, " "); got != "barrier_2=true barrier_2=false" {
		t.Fatalf("writes %q", got)
	}
	w.err = errors.New("no reply")
	err := c.Move(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "device relays-1: write barrier_2 = true: no reply") {
		t.Fatalf("error %v: want the device, point and cause", err)
	}
}

func output(t *testing.T, name string) (*gpio.Output, *vpin.Pin) {
	t.Helper()
	p := vpin.New(name, 0, nil)
	o, err := gpio.NewOutput(p, gpio.OutputConfig{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return o, p
}

// One output is held while the barrier is up; with a close output too,
// each move pulses its own output and releases the other.
func TestOutputsBarrier(t *testing.T) {
	open, openPin := output(t, "open")
	held := &lane.Outputs{Open: open}
	held.Move(context.Background(), true)
	if openPin.Read() != periphgpio.High {
		t.Fatal("open output not held while up")
	}
	held.Move(context.Background(), false)
	if openPin.Read() != periphgpio.Low {
		t.Fatal("open output still active when down")
	}

	open2, openPin2 := output(t, "open2")
	cls, closePin := output(t, "close")
	pulsed := &lane.Outputs{Open: open2, Close: cls, Pulse: 50 * time.Millisecond}
	pulsed.Move(context.Background(), true)
	if openPin2.Read() != periphgpio.High || closePin.Read() != periphgpio.Low {
		t.Fatal("open pulse not started")
	}
	testenv.WaitFor(t, 10*time.Second, "the open pulse to end", func() bool { return openPin2.Read() == periphgpio.Low })
	pulsed.Move(context.Background(), false)
	if closePin.Read() != periphgpio.High || openPin2.Read() != periphgpio.Low {
		t.Fatal("close pulse not started")
	}
	testenv.WaitFor(t, 10*time.Second, "the close pulse to end", func() bool { return closePin.Read() == periphgpio.Low })
}
