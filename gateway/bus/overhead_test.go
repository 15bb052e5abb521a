package bus

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/luling-edge/luling/gateway/serialport"
)

// echoPort answers every write at once with a fixed reply: a line with no
// wire time, so that what a transaction costs is the arbiter's own work.
type echoPort struct {
	reply   []byte
	pending []byte
}

func (p *echoPort) Write(b []byte) (int, error) { p.pending = p.reply; return len(b), nil }
func (p *echoPort) Flush() error                { return nil }
func (p *echoPort) Close() error                { return nil }
func (p *echoPort) Read(b []byte) (int, error) {
	if len(p.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

// BenchmarkArbiterOverhead measures what the arbiter adds to a transaction
// (queueing, back-off bookkeeping, counters, framing, the reply copy) with
// the inter-frame silence switched off and a port that answers at once.
func BenchmarkArbiterOverhead(b *testing.B) {
	reply := []byte{0x01, 0x03, 0x04, 0x00, 0x2a, 0x00, 0x07, 0x00, 0x00}
	bus, err := New(Config{Name: "bench", Port: serialport.Config{Name: "mem", Baud: 115200}},
		Options{
			Logger: slog.New(slog.DiscardHandler),
			Open:   func(serialport.Config) (serialport.Port, error) { return &echoPort{reply: reply}, nil },
		})
	if err != nil {
		b.Fatal(err)
	}
	bus.silence = 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bus.Run(ctx)
	<-bus.Ready()
	h := bus.Device("bay-1")
	req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b}
	fl := func(p []byte) (int, error) {
		if len(p) < 3 {
			return 0, nil
		}
		return 5 + int(p[2]), nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Transact(ctx, req, fl); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/tx")
}
