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
	ctx, h, req, fl := echoBus(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Transact(ctx, req, fl); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/tx")
}

// A successful transaction allocates only the reply it returns: the lock's
// waiters are reused and no errors.As target escapes on success.
func TestTransactAllocatesOnlyTheReply(t *testing.T) {
	ctx, h, req, fl := echoBus(t)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := h.Transact(ctx, req, fl); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("Transact allocates %v times, want 1 (the reply)", n)
	}
}

// echoBus runs a bus on an echoPort without the inter-frame silence and
// returns a device's handle, a request and its reply's FrameLenFunc.
func echoBus(tb testing.TB) (context.Context, *Handle, []byte, func([]byte) (int, error)) {
	reply := []byte{0x01, 0x03, 0x04, 0x00, 0x2a, 0x00, 0x07, 0x00, 0x00}
	bus, err := New(Config{Name: "bench", Port: serialport.Config{Name: "mem", Baud: 115200}},
		Options{
			Logger: slog.New(slog.DiscardHandler),
			Open:   func(serialport.Config) (serialport.Port, error) { return &echoPort{reply: reply}, nil },
		})
	if err != nil {
		tb.Fatal(err)
	}
	bus.silence = 0
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go bus.Run(ctx)
	<-bus.Ready()
	req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b}
	fl := func(p []byte) (int, error) {
		if len(p) < 3 {
			return 0, nil
		}
		return 5 + int(p[2]), nil
	}
	return ctx, bus.Device("bay-1"), req, fl
}
