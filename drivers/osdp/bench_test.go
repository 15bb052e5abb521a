package osdp_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/gateway/bus"
)

// BenchmarkPollCycle polls 8 readers on one line through the bus arbiter
// and the pty, one after another as the line allows, and compares the
// achieved polls per second with the physical limit: the wire time of a
// POLL (9 bytes with the mark) and its ACK (9 bytes) at 10 bits a
// character.
func BenchmarkPollCycle(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		b.Run(fmt.Sprintf("8readers-%d", baud), func(b *testing.B) {
			r := newRig(b, baud)
			var pds []*osdp.PD
			for a := byte(1); a <= 8; a++ {
				r.reader(b, osdpsim.ReaderConfig{Addr: a})
				pds = append(pds, r.pd(b, fmt.Sprintf("door-%d", a), osdp.Config{Addr: a}))
			}
			for _, p := range pds {
				online(b, p)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				for _, p := range pds {
					if err := p.Poll(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			el := time.Since(start)
			b.StopTimer()
			reportPolls(b, r, 8*b.N, el)
		})
		// The same through bus.Sweep, the gateway's idle-time polling:
		// round-robin, back to back.
		b.Run(fmt.Sprintf("sweep-8readers-%d", baud), func(b *testing.B) {
			r := newRig(b, baud)
			var ps []bus.Poller
			var n atomic.Int64
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			for a := byte(1); a <= 8; a++ {
				r.reader(b, osdpsim.ReaderConfig{Addr: a})
				p := r.pd(b, fmt.Sprintf("door-%d", a), osdp.Config{Addr: a})
				online(b, p)
				ps = append(ps, bus.Poller{Name: fmt.Sprint(a), Retry: time.Second, Poll: func(ctx context.Context) error {
					err := p.Poll(ctx)
					if n.Add(1) == int64(8*b.N) {
						cancel()
					}
					return err
				}})
			}
			b.ResetTimer()
			start := time.Now()
			if err := r.bus.Sweep(sctx, ps); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			reportPolls(b, r, 8*b.N, el)
		})
	}
}

// reportPolls reports polls per second against the line's limit.
func reportPolls(b *testing.B, r *rig, n int, el time.Duration) {
	polls := float64(n)
	wire := r.line.WireTime(9 + 9)
	limit := float64(time.Second) / float64(wire)
	got := polls / el.Seconds()
	b.ReportMetric(got, "polls/s")
	b.ReportMetric(limit, "limit_polls/s")
	b.ReportMetric(100*got/limit, "efficiency_%")
	b.ReportMetric(float64(r.bus.Silence().Microseconds()), "silence_us")
}

// BenchmarkCardRead measures the CP's processing of one card read: POLL
// out, RAW reply in, decoded and queued as an event, over the simulator's
// in-process transport (no line, no pty), with and without the secure
// channel. The simulated reader's own work is included.
func BenchmarkCardRead(b *testing.B) {
	for _, secure := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "secure"}[secure], func(b *testing.B) {
			line, err := osdpsim.New(osdpsim.Config{Name: "bench", Baud: 115200})
			if err != nil {
				b.Fatal(err)
			}
			key := [16]byte{1, 2, 3}
			rd, err := line.Add(osdpsim.ReaderConfig{Addr: 1, Secure: secure, SCBK: &key})
			if err != nil {
				b.Fatal(err)
			}
			p, err := osdp.NewPD(line, osdp.Config{Name: "bench", Addr: 1, Secure: secure, SCBK: &key, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			online(b, p)
			p.TakeEvents()
			card := osdpsim.Wiegand26(12, 345)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				rd.PresentCard(26, card)
				if err := p.Poll(ctx); err != nil {
					b.Fatal(err)
				}
				if ev := p.TakeEvents(); len(ev) != 1 || ev[0].Card.Bits != 26 {
					b.Fatalf("events %+v", ev)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/card")
		})
	}
}
