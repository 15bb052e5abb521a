package sunspec_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/sunspec"
)

// gatewayWithoutTarget is a Modbus gateway (a data logger, a TCP/RTU
// converter) whose inverter behind it does not answer: every request gets
// exception 0x0B.
type gatewayWithoutTarget struct {
	mu       sync.Mutex
	requests int
}

func (g *gatewayWithoutTarget) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	g.mu.Lock()
	g.requests++
	g.mu.Unlock()
	reply := modbus.AppendCRC([]byte{req[0], req[1] | 0x80, 0x0B})
	if n, err := frameLen(reply); err != nil || n != len(reply) {
		return nil, errors.New("frame length of the exception reply")
	}
	return reply, nil
}

func (g *gatewayWithoutTarget) count() int { g.mu.Lock(); defer g.mu.Unlock(); return g.requests }

// An inverter behind a Modbus gateway that cannot reach it is absent, not
// "not SunSpec": the driver says so, stops at the first base and backs off.
func TestInverterAbsentBehindGatewayBacksOff(t *testing.T) {
	g := &gatewayWithoutTarget{}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	info, _ := drivers.Lookup("sunspec")
	dev, err := info.New(drivers.Spec{ID: "inv-5", Driver: "sunspec", Bus: "rs485-pv", Unit: 5},
		drivers.Env{Bus: g, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*sunspec.Device)
	_, err = d.Poll(context.Background())
	const want = "unit 5 is absent behind the gateway (exception 0x0B: gateway target device failed to respond)"
	if !errors.Is(err, drivers.ErrAbsent) || errors.Is(err, sunspec.ErrNotSunSpec) || !strings.Contains(err.Error(), want) {
		t.Fatalf("poll: %v, want ErrAbsent saying %q", err, want)
	}
	if g.count() != 1 {
		t.Errorf("%d requests, want 1: the other bases are not tried behind a gateway that cannot reach the unit", g.count())
	}
	now = now.Add(500 * time.Millisecond)
	if _, err := d.Poll(context.Background()); !errors.Is(err, drivers.ErrAbsent) || g.count() != 1 {
		t.Errorf("poll during the back-off: %v, %d requests; want ErrAbsent and nothing sent", err, g.count())
	}
	if r := d.Report(); r["state"] != "absent" || !strings.Contains(r["cause"].(string), want) {
		t.Errorf("report %v", r)
	}
}
