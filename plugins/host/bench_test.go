package host_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

// BenchmarkPollRoundTrip measures one Poll through a plugin process (the
// plugin answers without bus I/O): the overhead a plugin driver adds to
// every poll. Each poll gets its own context with a deadline, as the
// gateway's poll loop gives it. Target: p99 ≤ 200 µs.
func BenchmarkPollRoundTrip(b *testing.B) {
	benchPoll(b, "nobus", 1)
}

// BenchmarkPollWithBus measures one Poll in which the plugin makes one bus
// transaction (through the gateway's Bus service, to an in-memory bus that
// answers at once): a plugin driver's whole overhead per poll of a serial
// device, two round trips between the processes.
func BenchmarkPollWithBus(b *testing.B) {
	benchPoll(b, "echo", 1)
}

// BenchmarkReadings measures readings per second through a plugin driver
// that returns 100 readings per poll.
func BenchmarkReadings(b *testing.B) {
	benchPoll(b, "bulk", 100)
}

// BenchmarkPollRoundTripGRPC is BenchmarkPollRoundTrip with the direct
// channel turned off: every poll a gRPC call, as version-1 plugins and
// plugins built with an older SDK are polled.
func BenchmarkPollRoundTripGRPC(b *testing.B) {
	benchPoll(b, "nobus", 1, func(o *host.Options) { o.NoDirect = true })
}

func benchPoll(b *testing.B, mode string, perPoll int, edit ...func(*host.Options)) {
	o := host.Options{
		Name: "bench", Path: testPlugin.path, SHA256: testPlugin.sum,
		Config: map[string]any{"mode": mode},
		Logger: slog.New(slog.DiscardHandler),
		Bus:    plugintest.BusFunc(echoBus),
	}
	for _, e := range edit {
		e(&o)
	}
	p, err := host.New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for range 100 { // start the process and warm up the connection
		if _, err := p.Poll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		t0 := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		recs, err := p.Poll(pctx)
		cancel()
		lat = append(lat, time.Since(t0))
		if err != nil || len(recs) != perPoll {
			b.Fatalf("Poll = %d records, %v", len(recs), err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(b.N*perPoll)/elapsed.Seconds(), "readings/s")
}
