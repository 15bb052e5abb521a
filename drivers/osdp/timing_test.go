package osdp_test

import (
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/gateway/bus"
)

// An OSDP line needs two character times of silence, well under the Modbus
// t3.5 that a bus keeps by default, and the driver tells the gateway so
// through its registration.
func TestTurnaround(t *testing.T) {
	info, ok := drivers.Lookup("osdp")
	if !ok || info.Turnaround == nil {
		t.Fatal("the osdp driver does not register its turnaround: its buses would keep the Modbus t3.5")
	}
	for _, c := range []struct {
		baud int
		want time.Duration
	}{
		{9600, 2083333 * time.Nanosecond},
		{38400, 520833 * time.Nanosecond},
		{115200, 173611 * time.Nanosecond},
		{230400, 86805 * time.Nanosecond},
	} {
		if got := info.Turnaround(c.baud, 10); got != c.want {
			t.Errorf("turnaround at %d baud 8N1 = %v, want two characters %v", c.baud, got, c.want)
		}
		if t35 := bus.Silence(c.baud, 10); info.Turnaround(c.baud, 10) >= t35 {
			t.Errorf("turnaround at %d baud is not below the Modbus t3.5 %v", c.baud, t35)
		}
	}
	if got := osdp.Turnaround(9600, 11); got != 2291666*time.Nanosecond {
		t.Errorf("turnaround at 9600 baud, 11 bits a character = %v, want 2.291666ms", got)
	}
}
