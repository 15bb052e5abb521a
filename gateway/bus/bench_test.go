package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
)

// BenchmarkTransactPty runs transactions over a real pseudo-terminal with a
// responder that answers at once. At 115200 baud t3.5 is 1750 µs, which
// bounds the rate near 570 transactions/s; the metric shows how close the
// bus comes.
func BenchmarkTransactPty(b *testing.B) {
	l := newLine(b)
	bs := startBus(b, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 2 * time.Second}, bus.Options{})
	h := bs.Device("bay-1")
	ctx := context.Background()
	var seq byte
	b.ResetTimer()
	for b.Loop() {
		seq++
		if _, err := h.Transact(ctx, request(1, seq), frameLen(1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	b.ReportMetric(float64(bs.Silence().Microseconds()), "t3.5-µs")
	s := bs.Stats()
	b.ReportMetric(float64(s.EmptyReads), "empty-reads")
}
