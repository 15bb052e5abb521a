package rules

import (
	"reflect"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func faultEvent(dev, state string, at time.Time) payload.Record {
	return payload.Record{Measurement: "fault", Time: at, Tags: map[string]string{"device": dev, "driver": "modbus"},
		Fields: map[string]payload.Value{"state": payload.String(state), "message": payload.String("x")}}
}

// TestLEDReassertedWhenSensorReturns: a bay sensor that reboots already
// occupied comes back with its LED reset to green and reports nothing new
// (its occupancy did not change). The bay-led example holds the LED equal
// to the occupancy, so the gateway's online fault event for the device
// writes the held value again; a heartbeat that repeats the state writes
// nothing, and other devices' events re-assert nothing.
func TestLEDReassertedWhenSensorReturns(t *testing.T) {
	clk := newFakeClock()
	w := newFakeWriter()
	e := mustEngine(t, example(t, "bay-led.yaml"), Options{Clock: clk, Writer: w})
	run(t, e)
	at := t0
	step := func(events bool, recs ...payload.Record) {
		at = at.Add(time.Second)
		if events {
			e.ObserveEvents(recs)
		} else {
			e.Observe(recs)
		}
	}
	step(false, bay("bay-01", "a", "01", true, at), bay("bay-02", "a", "02", false, at))
	w.wait(t, 2)
	step(true, faultEvent("bay-01", "offline", at))
	step(true, faultEvent("bay-01", "online", at)) // rebooted: LED reset to green
	got := w.wait(t, 3)
	step(false, bay("bay-01", "a", "01", true, at)) // heartbeat: no write
	step(true, faultEvent("bay-03", "online", at))  // not a device the rule holds
	step(false, bay("bay-02", "a", "02", true, at))
	got = w.wait(t, 4)
	want := []string{"bay-01.led=red", "bay-02.led=green", "bay-01.led=red", "bay-02.led=red"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("writes\n got %v\nwant %v", got, want)
	}
}
