package outbox

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// BenchmarkAppend measures readings per second through Append with several
// concurrent appenders, one parking_bay reading per Append (the worst case
// for durability: every reading waits for its fsync).
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		appenders int
		window    time.Duration
	}{
		{1, 0}, {8, 0}, {8, DefaultCommitInterval}, {64, 0}, {64, DefaultCommitInterval},
	} {
		b.Run(fmt.Sprintf("appenders=%d/window=%s", bc.appenders, bc.window), func(b *testing.B) {
			var lb logBuf
			opts := testOptions(b.TempDir(), &lb)
			opts.CommitInterval = bc.window
			opts.MaxBytes = 256 << 20
			opts.SegmentBytes = 16 << 20
			o := mustOpen(b, opts)
			defer o.Close()
			recs := make([]payload.Record, 1024)
			for i := range recs {
				recs[i] = bay(fmt.Sprintf("bay-%d", i%200), i)
			}
			before := o.Stats()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range bc.appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if err := o.Append(context.Background(), payload.Telemetry, recs[i%1024:i%1024+1]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start).Seconds()
			b.StopTimer()
			st := o.Stats()
			fs := float64(st.Fsyncs - before.Fsyncs)
			b.ReportMetric(float64(b.N)/el, "readings/s")
			b.ReportMetric(float64(st.BytesWritten-before.BytesWritten)/float64(b.N), "bytes/reading")
			b.ReportMetric(fs/el, "fsyncs/s")
			b.ReportMetric(float64(b.N)/float64(st.Groups-before.Groups), "readings/group")
		})
	}
}

// BenchmarkDrain measures how fast the uplink side can take messages out:
// Pending (reading bodies back from the segments) plus Ack, 100 at a time.
// Messages hold 10 parking_bay readings each.
func BenchmarkDrain(b *testing.B) {
	var lb logBuf
	opts := testOptions(b.TempDir(), &lb)
	opts.MaxBatchRecords = 10
	opts.MaxBytes = 256 << 20
	o := mustOpen(b, opts)
	defer o.Close()
	recs := make([]payload.Record, 500)
	for i := range recs {
		recs[i] = bay(fmt.Sprintf("bay-%d", i%200), i)
	}
	fill := func() {
		for range 40 { // 40 × 50 messages
			if err := o.Append(context.Background(), payload.Telemetry, recs); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	var after uint64
	var bodyBytes int64
	drained := 0
	b.ResetTimer()
	for drained < b.N {
		if o.Stats().Unacked.Messages == 0 {
			b.StopTimer()
			fill()
			b.StartTimer()
		}
		msgs, err := o.Pending(ctx, after, min(100, b.N-drained))
		if err != nil {
			b.Fatal(err)
		}
		seqs := make([]uint64, len(msgs))
		for i, m := range msgs {
			seqs[i] = m.Seq
			bodyBytes += int64(len(m.Body))
		}
		o.Ack(seqs...)
		after = seqs[len(seqs)-1]
		drained += len(msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "messages/s")
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(bodyBytes)/float64(b.N), "body-bytes/message")
}

// BenchmarkOpen measures recovery of an outbox holding 20,000 unacknowledged
// single-reading messages, and the heap its index takes per message.
func BenchmarkOpen(b *testing.B) {
	var lb logBuf
	opts := testOptions(b.TempDir(), &lb)
	opts.MaxBytes = 256 << 20
	opts.MaxBatchRecords = 1
	o := mustOpen(b, opts)
	const n = 20000
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 50 {
				if err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-o", g*1000+i)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	o.Close()
	var heap uint64
	b.ResetTimer()
	for range b.N {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		o := mustOpen(b, opts)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap = m1.HeapAlloc - m0.HeapAlloc
		if o.Stats().Unacked.Messages != n {
			b.Fatalf("recovered %d messages, want %d", o.Stats().Unacked.Messages, n)
		}
		o.Close()
	}
	b.ReportMetric(float64(heap)/n, "index-bytes/message")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/open")
}

// BenchmarkTelemetryLoad is a lot of 500 bays, each changing about every
// 10 s (50 readings/s, one Append each, as the pipeline hands them over),
// for 3 s of wall time: fsyncs per second and bytes written per reading
// with the commit interval gatewayd uses (10 ms) and with a 1 s telemetry
// window. Target with the window: at most 2 fsyncs/s.
func BenchmarkTelemetryLoad(b *testing.B) {
	const (
		rate = 50 // readings per second
		span = 3 * time.Second
	)
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{{"window=0", 0}, {"window=1s", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			opts := testOptions(b.TempDir(), &logBuf{})
			opts.CommitInterval = 10 * time.Millisecond
			opts.TelemetryWindow = bc.window
			o := mustOpen(b, opts)
			defer o.Close()
			var fsyncs, written, readings float64
			for range b.N {
				before := o.Stats()
				var wg sync.WaitGroup
				tick := time.NewTicker(time.Second / rate)
				start := time.Now()
				n := 0
				for time.Since(start) < span {
					<-tick.C
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						if err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay(fmt.Sprintf("bay-%d", i%500), i)}); err != nil {
							b.Error(err)
						}
					}(n)
					n++
				}
				tick.Stop()
				wg.Wait()
				el := time.Since(start).Seconds()
				st := o.Stats()
				fsyncs = float64(st.Fsyncs-before.Fsyncs) / el
				written = float64(st.BytesWritten - before.BytesWritten)
				readings = float64(n)
			}
			b.ReportMetric(fsyncs, "fsyncs/s")
			b.ReportMetric(written/readings, "bytes/reading")
		})
	}
}

// BenchmarkReplayHour is the replay after a one-hour outage at the load of
// BenchmarkTelemetryLoad with a 1 s window: 3,600 messages of 50 readings,
// read back in sequence order (Pending, 100 at a time) and marked sent, as
// the uplink does. Target: at least 50,000 readings/s.
func BenchmarkReplayHour(b *testing.B) {
	opts := testOptions(b.TempDir(), &logBuf{})
	opts.MaxBytes = 256 << 20
	o := mustOpen(b, opts)
	defer o.Close()
	recs := make([]payload.Record, 50)
	for m := range 3600 {
		for i := range recs {
			recs[i] = bay(fmt.Sprintf("bay-%d", (m*50+i)%500), m*50+i)
		}
		if err := o.Append(context.Background(), payload.Telemetry, recs); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	readings := 0
	for range b.N {
		var after uint64
		for {
			msgs, err := o.Pending(ctx, after, 100)
			if err != nil {
				b.Fatal(err)
			}
			seqs := make([]uint64, len(msgs))
			for i, m := range msgs {
				if m.Seq != after+1 {
					b.Fatalf("replay out of order: %d after %d", m.Seq, after)
				}
				after = m.Seq
				seqs[i] = m.Seq
				readings += m.Records
			}
			o.Sent(seqs...)
			if after == 3600 {
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(readings)/b.Elapsed().Seconds(), "readings/s")
}
