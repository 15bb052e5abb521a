package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// BenchmarkBusEfficiency measures Modbus transactions per second through
// the real stack (modbus.Client → bus arbiter → tarm/serial → pty) against
// the paced simulator, over the physical maximum of the line: request wire
// time + t3.5 + reply wire time + t3.5, 11-bit characters (8E1). Target:
// efficiency ≥ 0.9.
func BenchmarkBusEfficiency(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		b.Run(fmt.Sprintf("baud=%d", baud), func(b *testing.B) {
			line := modbussim.Line{Baud: baud, CharBits: 11}
			srv, err := modbussim.NewServer(modbussim.Config{Name: "bench", Line: line})
			if err != nil {
				b.Fatal(err)
			}
			u, err := srv.AddUnit(1, modbussim.Sizes{HoldingRegisters: 16})
			if err != nil {
				b.Fatal(err)
			}
			u.WriteHolding(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
			pair, err := ptypair.Open(filepath.Join(b.TempDir(), "tty"))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); srv.Serve(ctx, pair.Master) }()
			bs, err := bus.New(bus.Config{Name: "bench", Port: serialport.Config{Name: pair.Path(), Baud: baud, Parity: serialport.ParityEven},
				Timeout: 500 * time.Millisecond}, bus.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); bs.Run(ctx) }()
			defer func() { cancel(); pair.Close(); wg.Wait() }()
			<-bs.Ready()
			c := modbus.NewClient(bs.Device("unit-1"), 1, "unit-1")
			if _, err := c.ReadHoldingRegisters(ctx, 0, 10); err != nil { // warm up, opens the port
				b.Fatal(err)
			}
			limit := 1 / line.MinTransaction(8, 5+2*10).Seconds()
			// At least two seconds of line time, for a stable rate even with -benchtime 1x.
			n := max(b.N, int(2*limit))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < n; i++ {
				if _, err := c.ReadHoldingRegisters(ctx, 0, 10); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start)
			b.StopTimer()
			tps := float64(n) / el.Seconds()
			b.ReportMetric(tps, "tx/s")
			b.ReportMetric(limit, "limit-tx/s")
			b.ReportMetric(tps/limit, "efficiency")
			if v := srv.Stats().T35Violations; v != 0 {
				b.Errorf("%d t3.5 violations: the arbiter did not keep the inter-frame silence", v)
			}
		})
	}
}

// BenchmarkReadingsToPuback measures readings per second from the pollers'
// hand-off (Gateway.Emit, as a poll result) through the committer, the
// durable outbox (fsync'd group commits) and the MQTT uplink until the
// broker's PUBACK, against a real Mosquitto. It also reports the outbox's
// bytes written per reading, the test process's CPU per reading (the
// pollers' making of records included), and tail-ms: how long the last
// PUBACK came after the last Emit (the readings emitted last can wait up to
// one telemetry window, 1 s, in the outbox). Target: ≥ 100,000 readings/s
// (issue #17).
func BenchmarkReadingsToPuback(b *testing.B) {
	broker := testenv.Mosquitto(b)
	dir := b.TempDir()
	cfg := minimalConfig(b, broker.URL(), filepath.Join(dir, "outbox"))
	gw, err := New(cfg, Options{Version: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for !gw.up.u.Connected() {
		time.Sleep(10 * time.Millisecond) // yields until the uplink connects; judges nothing
	}

	const pollers, perPoll = 50, 10 // 50 devices handing over 10 readings per poll
	// A million readings at least: the last ones may wait out the 1 s
	// telemetry window (tail-ms), which must not be most of the run.
	total := b.N
	if total < 1_000_000 {
		total = 1_000_000
	}
	rounds := total / (pollers * perPoll)
	total = rounds * pollers * perPoll
	t0 := time.Now()
	before := gw.ob.Stats()
	cpu0 := processCPU(b)
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := 0; p < pollers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("bay-%03d", p)
			for r := 0; r < rounds; r++ {
				recs := make([]payload.Record, perPoll)
				for i := range recs {
					recs[i] = payload.Record{Measurement: "parking_bay", Time: t0.Add(time.Duration(r*perPoll+i) * time.Microsecond),
						Tags:   map[string]string{"device": dev, "lot": "l1", "zone": "a", "bay": dev[4:]},
						Fields: map[string]payload.Value{"occupied": payload.Bool(i%2 == 0), "distance_cm": payload.Float(float64(100 + i))}}
				}
				gw.Emit(ctx, payload.Telemetry, recs)
			}
		}()
	}
	wg.Wait()
	emitted := time.Now()
	// Wait until the broker acknowledged everything: every message is sent
	// (PUBACK). Unacked counts what the cloud has not confirmed yet, and
	// no cloud runs here.
	for {
		s := gw.ob.Stats()
		if s.AppendedRecords-before.AppendedRecords >= int64(total) && s.SentThrough+1 >= s.NextSeq {
			break
		}
		time.Sleep(2 * time.Millisecond) // yields while the broker acknowledges; the benchmark times the whole
	}
	el := time.Since(t0)
	tail := time.Since(emitted)
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	after := gw.ob.Stats()
	b.ReportMetric(float64(total)/el.Seconds(), "readings/s")
	b.ReportMetric(float64(after.BytesWritten-before.BytesWritten)/float64(total), "outbox-bytes/reading")
	b.ReportMetric(float64(after.Fsyncs-before.Fsyncs)/el.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/reading")
	b.ReportMetric(float64(tail.Milliseconds()), "tail-ms")
	if g := after.Groups - before.Groups; g > 0 {
		b.ReportMetric(float64(after.Overlapped-before.Overlapped)/float64(g), "overlapped/group")
	}
}

// processCPU is the user and system CPU time the test process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
