package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// BenchmarkGatewaydRSS500 runs the gatewayd binary with 500 simulated bay
// sensors on 8 RS-485 buses (polled every second, publishing to a real
// Mosquitto) and reports its resident memory after 20 s of operation, and
// its peak. Target: ≤ 20 MiB (issue #17).
func BenchmarkGatewaydRSS500(b *testing.B) {
	broker := testenv.Mosquitto(b)
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 500, Buses: 8, Ultrasonic: 0.5, Seed: 3,
		Line: modbussim.Line{Baud: 115200, CharBits: 11}, Speed: 60, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer lot.Close()
	path := lotGatewayConfig(b, broker, lot, "1s")
	gw := startBenchProc(b, filepath.Join(binDir, "gatewayd"), "-config", path)
	b.ResetTimer()
	time.Sleep(20 * time.Second) // the span over which gatewayd's memory is measured
	b.StopTimer()
	rss, hwm := procMem(b, gw.Process.Pid)
	gw.Process.Kill()
	gw.Wait()
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
}

// lotGatewayConfig writes a gatewayd config that reads every bay of lot
// (one bus per simulated bus, 115200 8E1) every poll and publishes to
// broker, and returns its path. It logs the status listener's address, where
// a gatewayd built with LULING_E2E_TAGS=pprof serves /debug/pprof/.
func lotGatewayConfig(b *testing.B, broker *testenv.Broker, lot *modbussim.Lot, poll string) string {
	b.Helper()
	dir := b.TempDir()
	status := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	b.Logf("gatewayd status listener: http://%s/", status)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "site: bench\ngateway: gw-1\nuplink:\n  brokers: [%s]\noutbox:\n  path: %s\nstatus:\n  listen: %s\npipeline:\n  health_interval: 5s\n",
		broker.URL(), filepath.Join(dir, "outbox"), status)
	cfg.WriteString("buses:\n")
	for _, bus := range lot.Buses() {
		fmt.Fprintf(&cfg, "  - {name: %s, port: %s, baud: 115200, parity: even, timeout: 200ms}\n", bus.Name, bus.Path)
	}
	cfg.WriteString("devices:\n")
	for _, bay := range lot.Bays() {
		fmt.Fprintf(&cfg, "  - {id: bay-%03d, driver: modbus, bus: rs485-%d, unit: %d, profile: %s, poll: %s, tags: {lot: l1, zone: z%d, bay: \"%03d\"}}\n",
			bay.Bay, bay.Bus+1, bay.Unit, bay.Model.Profile(), poll, bay.Bus+1, bay.Bay)
	}
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

func procMem(b *testing.B, pid int) (rss, hwm int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
