package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/bus"
)

// A bus keeps the silence its devices' protocol needs: a bus of OSDP
// readers waits two character times before a request, not the Modbus t3.5;
// a bus with any Modbus device on it, or none yet, keeps t3.5; the config's
// turnaround overrides both.
func TestBusTurnaroundFollowsItsDevices(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`site: s
gateway: g
uplink: {brokers: ["tcp://127.0.0.1:1"]}
outbox: {path: %s}
status: {listen: ""}
buses:
  - {name: doors, port: /dev/ttyTEST0, baud: 115200}
  - {name: doors-slow, port: /dev/ttyTEST1, baud: 9600}
  - {name: bays, port: /dev/ttyTEST2, baud: 115200}
  - {name: mixed, port: /dev/ttyTEST3, baud: 115200}
  - {name: spare, port: /dev/ttyTEST4, baud: 115200}
  - {name: radio, port: /dev/ttyTEST5, baud: 115200, turnaround: 5ms}
devices:
  - {id: reader-1, driver: osdp, bus: doors, unit: 1}
  - {id: reader-2, driver: osdp, bus: doors, unit: 2}
  - {id: reader-3, driver: osdp, bus: doors-slow, unit: 1}
  - {id: bay-1, driver: modbus, bus: bays, unit: 1, profile: ultrasonic-bay}
  - {id: reader-4, driver: osdp, bus: mixed, unit: 1}
  - {id: bay-2, driver: modbus, bus: mixed, unit: 2, profile: ultrasonic-bay}
  - {id: reader-5, driver: osdp, bus: radio, unit: 1}
`, filepath.Join(dir, "outbox"))
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, append(opts, config.SkipFileChecks())...)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Version: "test", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { // New opened these; Run would close them
		gw.exec.Close()
		gw.ob.Close()
	}()
	t35 := bus.Silence(115200, 10)
	want := map[string]time.Duration{
		"doors":      173611 * time.Nanosecond,  // two 8N1 characters at 115200
		"doors-slow": 2083333 * time.Nanosecond, // at 9600
		"bays":       t35,
		"mixed":      t35,
		"spare":      t35,
		"radio":      5 * time.Millisecond,
	}
	for _, be := range gw.buses {
		if got := be.b.Silence(); got != want[be.b.Name()] {
			t.Errorf("bus %s keeps %v before a request, want %v", be.b.Name(), got, want[be.b.Name()])
		}
		delete(want, be.b.Name())
	}
	if len(want) != 0 {
		t.Errorf("buses not built: %v", want)
	}
	// The status page shows each bus's turnaround.
	for _, b := range gw.Snapshot().Buses {
		if b.Name == "doors" && (b.TurnaroundUS < 173.6 || b.TurnaroundUS > 173.7) {
			t.Errorf("status: bus doors turnaround %v µs, want 173.6", b.TurnaroundUS)
		}
	}
}
