package modbus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
)

// A unit behind a Modbus gateway that answers every poll with exception
// 0x0B (or 0x0A) is absent: the device says so in words, backs off like a
// unit that misses its replies (1 s, 2 s, ... capped) without sending
// anything in between, and polls normally again once the unit answers.
func TestGatewayExceptionsBackOff(t *testing.T) {
	for _, code := range []byte{0x0B, 0x0A} {
		b := newBank(17, 6)
		now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
		info, _ := drivers.Lookup(DriverName)
		dev, err := info.New(drivers.Spec{ID: "bay-17", Driver: DriverName, Bus: "rs485-1", Unit: 17, Profile: "ultrasonic-bay"},
			drivers.Env{Bus: b, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		d := dev.(*Device)
		b.mangle = func(reply []byte) []byte { return b.exception(reply, code) }
		ctx := context.Background()

		_, err = d.Poll(ctx)
		want := map[byte]string{
			0x0B: "unit 17 is absent behind the gateway (exception 0x0B: gateway target device failed to respond)",
			0x0A: "unit 17 is absent behind the gateway (exception 0x0A: gateway path unavailable)",
		}[code]
		if !errors.Is(err, drivers.ErrAbsent) || !errors.Is(err, drivers.ErrTimeout) || err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("exception 0x%02X: poll error %v, want one wrapping ErrAbsent and ErrTimeout that says %q", code, err, want)
		}
		sent := len(b.requests)
		for i, step := range []struct {
			after time.Duration
			sends bool
		}{
			{500 * time.Millisecond, false}, // back-off 1 s
			{500 * time.Millisecond, true},  // probe; back-off 2 s
			{1900 * time.Millisecond, false},
			{100 * time.Millisecond, true}, // probe; back-off 4 s
			{3 * time.Second, false},
		} {
			now = now.Add(step.after)
			_, err := d.Poll(ctx)
			if !errors.Is(err, drivers.ErrAbsent) {
				t.Fatalf("exception 0x%02X step %d: poll error %v, want ErrAbsent", code, i, err)
			}
			if got := len(b.requests) > sent; got != step.sends {
				t.Fatalf("exception 0x%02X step %d: sent a request = %v, want %v (err %v)", code, i, got, step.sends, err)
			}
			sent = len(b.requests)
		}
		if r := d.Report(); r["state"] != "absent" || !strings.Contains(r["cause"].(string), want) {
			t.Errorf("report %v, want state absent and the cause", r)
		}
		b.mangle = nil
		now = now.Add(time.Second)
		if _, err := d.Poll(ctx); err != nil {
			t.Fatalf("exception 0x%02X: poll after the unit came back: %v", code, err)
		}
		if _, err := d.Poll(ctx); err != nil || len(b.requests) != sent+2 {
			t.Fatalf("exception 0x%02X: second poll after recovery: %v, %d requests, want %d", code, err, len(b.requests), sent+2)
		}
		if r := d.Report(); r["state"] != "ok" {
			t.Errorf("report %v after recovery, want state ok", r)
		}
	}
}

// Other exceptions mean the unit is there: no back-off.
func TestOtherExceptionsDoNotBackOff(t *testing.T) {
	b := newBank(17, 6)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	info, _ := drivers.Lookup(DriverName)
	dev, err := info.New(drivers.Spec{ID: "bay-17", Driver: DriverName, Bus: "rs485-1", Unit: 17, Profile: "ultrasonic-bay"},
		drivers.Env{Bus: b, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	b.mangle = func(reply []byte) []byte { return b.exception(reply, 0x04) }
	for range 3 {
		if _, err := dev.Poll(context.Background()); !errors.Is(err, ErrDeviceFailure) || errors.Is(err, drivers.ErrAbsent) {
			t.Fatalf("poll error %v, want a device failure, not absent", err)
		}
	}
	if len(b.requests) != 3 {
		t.Errorf("%d requests, want 3: a present unit is not skipped", len(b.requests))
	}
}

func TestAbsentErrorKeepsTheException(t *testing.T) {
	b := newBank(17, 6)
	info, _ := drivers.Lookup(DriverName)
	dev, err := info.New(drivers.Spec{ID: "bay-17", Driver: DriverName, Bus: "rs485-1", Unit: 17, Profile: "ultrasonic-bay"}, drivers.Env{Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	b.mangle = func(reply []byte) []byte { return b.exception(reply, 0x0B) }
	_, err = dev.Poll(context.Background())
	if !errors.Is(err, ErrGatewayTargetFailed) || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "modbus: bay-17: unit 17 is absent") {
		t.Errorf("error %q: want one line naming the device, wrapping the exception", err)
	}
}
