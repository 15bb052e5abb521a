package sunspec_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
)

// wireCounter passes transactions through and adds up the physical minimum
// time of each (request and reply on the wire, 11-bit characters, plus
// t3.5 after each), to compare a benchmark against the line's limit.
type wireCounter struct {
	next  drivers.Transactor
	line  modbussim.Line
	mu    sync.Mutex
	limit time.Duration
	n     int
}

func (w *wireCounter) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	reply, err := w.next.Transact(ctx, req, frameLen)
	w.mu.Lock()
	w.n++
	w.limit += w.line.MinTransaction(len(req), len(reply))
	w.mu.Unlock()
	return reply, err
}

func (w *wireCounter) take() (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, n := w.limit, w.n
	w.limit, w.n = 0, 0
	return l, n
}

const benchBaud = 9600

func report(b *testing.B, w *wireCounter) {
	limit, n := w.take()
	perOp := float64(limit.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(perOp, "line-limit-ms/op")
	b.ReportMetric(float64(n)/float64(b.N), "transactions/op")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N)/perOp, "x-line-limit")
}

// BenchmarkDiscover: discovery of one device's map (marker, six model
// headers, end model) and its common model at 9600 baud.
func BenchmarkDiscover(b *testing.B) {
	r := newRig(b, benchBaud)
	r.inverter(b, sunspecsim.Config{Unit: 1, Base: 40000})
	w := &wireCounter{next: r.bus.Device("inv-1"), line: modbussim.Line{Baud: benchBaud, CharBits: 11}}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := sunspec.Scan(ctx, w, 1); err != nil {
			b.Fatal(err)
		}
	}
	report(b, w)
}

// BenchmarkPollThreeInverters: one poll of each of three inverters (103 +
// 160 with two modules + 123) on one bus at 9600 baud, after discovery.
func BenchmarkPollThreeInverters(b *testing.B) {
	r := newRig(b, benchBaud)
	w := &wireCounter{next: nil, line: modbussim.Line{Baud: benchBaud, CharBits: 11}}
	var devs []*sunspec.Device
	for u := 1; u <= 3; u++ {
		r.inverter(b, sunspecsim.Config{Unit: byte(u), Base: 40000})
		wc := &wireCounter{next: r.bus.Device(fmt.Sprint("inv-", u)), line: w.line}
		d, err := sunspec.New(drivers.Spec{ID: fmt.Sprint("inv-", u), Unit: u}, drivers.Env{Bus: sharedCounter{wc, w}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Poll(context.Background()); err != nil {
			b.Fatal(err)
		}
		devs = append(devs, d)
	}
	w.take()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		for _, d := range devs {
			if _, err := d.Poll(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	report(b, w)
}

// sharedCounter runs a transaction through its own device's handle and
// counts it on the shared counter.
type sharedCounter struct {
	own    *wireCounter
	shared *wireCounter
}

func (s sharedCounter) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	reply, err := s.own.next.Transact(ctx, req, frameLen)
	s.shared.mu.Lock()
	s.shared.n++
	s.shared.limit += s.shared.line.MinTransaction(len(req), len(reply))
	s.shared.mu.Unlock()
	return reply, err
}
