package status

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	snap := &Snapshot{Site: "lot-a", Gateway: "gw-01", Version: "test", Started: time.Now().Add(-time.Minute), Now: time.Now(),
		Uplink:  Uplink{Connected: true, Published: 7},
		Buses:   []Bus{{Name: "rs485-1", Port: "/dev/ttyUSB0", State: "up", Transactions: 10, Timeouts: 2}},
		Devices: []Device{{ID: "bay-001", Driver: "modbus", State: "ok", Polls: 5, LastValues: []Record{{Measurement: "parking_bay", Fields: map[string]any{"occupied": true}}}}}}
	s, err := Listen("127.0.0.1:0", func() *Snapshot { return snap }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	resp, err := http.Get("http://" + s.Addr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var got Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Gateway != "gw-01" || !got.Uplink.Connected || len(got.Devices) != 1 || len(got.Devices[0].LastValues) != 1 || got.Devices[0].LastValues[0].Fields["occupied"] != true {
		t.Fatalf("status: %+v", got)
	}

	resp, err = http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`luling_gateway_uplink_connected 1`,
		`luling_gateway_bus_timeouts_total{bus="rs485-1",port="/dev/ttyUSB0"} 2`,
		`luling_gateway_device_polls_total{device="bay-001",driver="modbus"} 5`,
		"# TYPE luling_gateway_bus_transactions_total counter",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if strings.Count(string(body), "# TYPE luling_gateway_device_polls_total") != 1 {
		t.Error("TYPE line repeated")
	}
}

func TestListenError(t *testing.T) {
	_, err := Listen("256.0.0.1:99999", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "status: listen on 256.0.0.1:99999") {
		t.Fatalf("want a clear listen error, got %v", err)
	}
}

// TestMetricsRuntimePluginsAndFloats: the Go runtime and process metrics
// are there, a plugin device's restarts and state are, and a float prints
// as a person would write it, not with binary noise in the last digits.
func TestMetricsRuntimePluginsAndFloats(t *testing.T) {
	snap := &Snapshot{Site: "lot-a", Gateway: "gw-01", Version: "test", Started: time.Now().Add(-time.Minute), Now: time.Now(),
		RSSBytes: 12 << 20, GoRoutine: 42, HeapInuseBytes: 3 << 20, CPUSeconds: 1.25,
		Buses: []Bus{{Name: "rs485-1", Port: "/dev/ttyUSB0", State: "up", Utilization: 0.25,
			TurnaroundUS: float64(3645833) / 1e3}},
		Devices: []Device{{ID: "sign-1", Driver: "plugin", State: "ok",
			Details: map[string]any{"plugin": "/usr/lib/luling/plugins/sign", "state": "running", "restarts": uint64(3)}}}}
	var b strings.Builder
	WriteMetrics(&b, snap)
	body := b.String()
	for _, want := range []string{
		"go_goroutines 42\n",
		"go_memstats_heap_inuse_bytes 3145728\n",
		"process_resident_memory_bytes 12582912\n",
		"process_cpu_seconds_total 1.25\n",
		"# TYPE process_cpu_seconds_total counter\n",
		`luling_gateway_bus_utilization{bus="rs485-1",port="/dev/ttyUSB0"} 0.25` + "\n",
		`luling_gateway_bus_turnaround_seconds{bus="rs485-1",port="/dev/ttyUSB0"} 0.003645833` + "\n",
		`luling_gateway_plugin_restarts_total{device="sign-1",plugin="/usr/lib/luling/plugins/sign"} 3` + "\n",
		`luling_gateway_plugin_running{device="sign-1",plugin="/usr/lib/luling/plugins/sign",state="running"} 1` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	for _, v := range []struct {
		in   float64
		want string
	}{{0.0036458330000000002, "0.003645833"}, {1e15, "1000000000000000"}, {12582912, "12582912"}, {0.1 + 0.2, "0.3"}, {-2.5, "-2.5"}} {
		if got := formatValue(v.in); got != v.want {
			t.Errorf("formatValue(%v) = %q, want %q", v.in, got, v.want)
		}
	}
}

// Lanes and lots have their counters and gauges in /metrics.
func TestMetricsLanesAndLots(t *testing.T) {
	snap := &Snapshot{Site: "lot-a", Gateway: "gw-01", Now: time.Now(),
		Lanes: []Lane{{Name: "p1-in", Direction: "in", State: "fault", Passed: 12, Tailgates: 2, Denied: 3, Faults: 1}},
		Lots:  []Lot{{Name: "p1", Capacity: 40, Occupied: 9, Free: 31}}}
	var b strings.Builder
	WriteMetrics(&b, snap)
	for _, want := range []string{
		`luling_gateway_lane_passages_total{lane="p1-in",direction="in"} 12`,
		`luling_gateway_lane_tailgates_total{lane="p1-in",direction="in"} 2`,
		`luling_gateway_lane_barrier_fault{lane="p1-in",direction="in"} 1`,
		`luling_gateway_lot_free{lot="p1"} 31`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The default build serves no profiles: net/http/pprof is linked in only
// with -tags pprof (docs/performance.md).
func TestProfilesOnlyWithTheBuildTag(t *testing.T) {
	s, err := Listen("127.0.0.1:0", func() *Snapshot { return &Snapshot{} }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + s.Addr() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := http.StatusNotFound
	if Profiling {
		want = http.StatusOK // from loopback
	}
	if resp.StatusCode != want {
		t.Errorf("GET /debug/pprof/ (Profiling %v): %s, want %d", Profiling, resp.Status, want)
	}
}
