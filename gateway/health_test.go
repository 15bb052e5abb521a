package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/payload"
)

// unstartedLot builds (without running it) a gateway of n modbus bays on
// one bus, the first ok of them answering with one record each, as a
// status page would show them.
func unstartedLot(t *testing.T, n, ok int) *Gateway {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "site: test-site\ngateway: gw-1\nuplink:\n  brokers: [tcp://127.0.0.1:1]\noutbox:\n  path: %s\n", filepath.Join(dir, "outbox"))
	fmt.Fprintf(&b, "buses:\n  - {name: rs485-1, port: %s, baud: 19200}\ndevices:\n", filepath.Join(dir, "tty"))
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {id: bay-%03d, driver: modbus, bus: rs485-1, unit: %d, profile: ultrasonic-bay, tags: {lot: l1, bay: \"%03d\"}}\n", i, i, i)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "gateway.yaml"), []byte(b.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.ob.Close() })
	now := time.Now()
	for _, d := range g.devices[:ok] {
		rec := payload.Record{Measurement: "parking_bay", Tags: d.spec.Tags,
			Fields: map[string]payload.Value{"occupied": payload.Bool(true), "distance_cm": payload.Int(120)}}
		g.deviceOK(context.Background(), d, now, []payload.Record{rec}, quietLogger())
	}
	return g
}

// The health tick reads counters; it does not render every device's last
// values as the status page does (that was about 1 KiB of garbage per
// device every health_interval, and it was live whenever a collection ran
// during the tick). Its allocations do not grow with the devices.
func TestHealthRecordAllocations(t *testing.T) {
	few, many := unstartedLot(t, 4, 3), unstartedLot(t, 200, 150)
	h := many.healthRecord()
	if ok, failed := h.Fields["devices_ok"].Int(), h.Fields["devices_failed"].Int(); ok != 150 || failed != 50 {
		t.Errorf("devices_ok %d, devices_failed %d, want 150 and 50", ok, failed)
	}
	if h.Fields["rss_bytes"].Int() <= 0 || h.Fields["goroutines"].Int() <= 0 {
		t.Errorf("rss_bytes %v, goroutines %v, want both above 0", h.Fields["rss_bytes"], h.Fields["goroutines"])
	}
	a := testing.AllocsPerRun(20, func() { few.healthRecord() })
	b := testing.AllocsPerRun(20, func() { many.healthRecord() })
	if b > a+2 || b > 40 {
		t.Errorf("healthRecord allocates %v times with 4 devices and %v with 200, want the same few", a, b)
	}
}
