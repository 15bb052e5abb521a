package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// committer is a gateway reduced to its commit path: the outbox as
// openOutbox builds it from the config, the queue and the committer.
func committer(t *testing.T, window time.Duration) (g *Gateway, stop func()) {
	t.Helper()
	dir := t.TempDir()
	cfg := minimalConfig(t, "tcp://127.0.0.1:1", dir)
	cfg.Outbox.TelemetryWindow = window
	ob, err := openOutbox(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	g = &Gateway{cfg: cfg, ob: ob, log: quietLogger(), queue: make(chan item, queueLen)}
	done := make(chan struct{})
	go func() { defer close(done); g.commit() }()
	return g, func() {
		// As Run stops: the committer ends the window, commits what is
		// queued, and only then is the outbox closed.
		close(g.queue)
		<-done
		if err := ob.Close(); err != nil {
			t.Error(err)
		}
	}
}

func bayReading(i int) payload.Record {
	return payload.Record{Measurement: "bay", Time: time.Unix(1_700_000_000, int64(i)),
		Tags:   map[string]string{"device": fmt.Sprintf("bay-%03d", i%500)},
		Fields: map[string]payload.Value{"occupied": payload.Bool(i%2 == 0)}}
}

func cardRead(i int) payload.Record {
	return payload.Record{Measurement: "access", Time: time.Unix(1_700_000_000, int64(i)),
		Tags:   map[string]string{"door": "lobby", "reader": "lobby-in", "result": "granted"},
		Fields: map[string]payload.Value{"credential": payload.String(fmt.Sprint("c-", i))}}
}

// pendingKinds counts the records of each kind the outbox holds on disk.
func pendingKinds(t *testing.T, ob *outboxAdapter) map[payload.Kind]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msgs, err := ob.Pending(ctx, 0, 10000)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	n := map[payload.Kind]int{}
	for _, m := range msgs {
		n[m.Kind] += int(m.Records)
	}
	return n
}

// An event is committed at once although telemetry queued before it waits
// in a telemetry window that would otherwise last an hour: the committer
// must not append events behind telemetry. The event takes every reading
// emitted before it along in the same commit, and 500 devices' readings
// cost a few fsyncs, not 500.
func TestEventNotHeldByTelemetryWindow(t *testing.T) {
	g, stop := committer(t, time.Hour)
	ctx := context.Background()
	for i := range 500 {
		g.Emit(ctx, payload.Telemetry, []payload.Record{bayReading(i)})
	}
	g.Emit(ctx, payload.Event, []payload.Record{cardRead(1)})
	testenv.WaitFor(t, 20*time.Second, "the card read to be durable", func() bool {
		return g.ob.Stats().Unacked.Records > 0 && pendingKinds(t, g.ob)[payload.Event] == 1
	})
	// Every reading emitted before the event was queued in the outbox in
	// time to ride along: telemetry is durable within one window.
	if n := pendingKinds(t, g.ob)[payload.Telemetry]; n != 500 {
		t.Errorf("%d readings durable with the event, want all 500", n)
	}
	if f := g.ob.Stats().Fsyncs; f > 20 {
		t.Errorf("%d fsyncs for one event and 500 readings; want a few", f)
	}
	stop()

	// Every reading was accepted and is on disk after the clean stop.
	cfg := g.cfg
	ob, err := outbox.Open(outbox.Options{Dir: cfg.Outbox.Path, Site: cfg.Site, Gateway: cfg.Gateway, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if s := ob.Stats(); s.Unacked.Records != 501 {
		t.Errorf("after restart the outbox holds %d records, want 501", s.Unacked.Records)
	}
	if g.refused.Load() != 0 {
		t.Errorf("%d records refused", g.refused.Load())
	}
}

// At a 500-bay lot's rate of change (50 readings/s, one Emit each) a 1 s
// telemetry window keeps fsyncs at about one a second, and events emitted
// meanwhile are each committed without waiting for the window.
func TestTelemetryWindowBoundsFsyncs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 s")
	}
	const rate, span = 50, 3 * time.Second
	g, stop := committer(t, time.Second)
	defer stop()
	ctx := context.Background()
	// One event first creates the segment files, so what follows counts
	// commits only.
	g.Emit(ctx, payload.Event, []payload.Record{cardRead(0)})
	testenv.WaitFor(t, 10*time.Second, "the first event", func() bool { return g.ob.Stats().AppendedRecords == 1 })
	g.Emit(ctx, payload.Telemetry, []payload.Record{bayReading(0)})
	testenv.WaitFor(t, 10*time.Second, "the first reading", func() bool { return g.ob.Stats().AppendedRecords == 2 })
	before := g.ob.Stats()
	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	n := 0
	for time.Since(start) < span {
		<-tick.C
		n++
		g.Emit(ctx, payload.Telemetry, []payload.Record{bayReading(n)})
	}
	elapsed := time.Since(start)
	after := g.ob.Stats()
	fsyncs := after.Fsyncs - before.Fsyncs
	perSec := float64(fsyncs) / elapsed.Seconds()
	t.Logf("%d readings in %v: %d fsyncs (%.1f/s), %d readings committed", n, elapsed.Round(time.Millisecond), fsyncs, perSec, after.AppendedRecords-before.AppendedRecords)
	if perSec > 2 {
		t.Errorf("%.1f fsyncs/s for telemetry with a 1 s window; want at most 2", perSec)
	}
	// An event now is durable long before the next window would end:
	// the committer hands it over at once, the outbox commits it at once.
	at := time.Now()
	g.Emit(ctx, payload.Event, []payload.Record{cardRead(1)})
	testenv.WaitFor(t, 10*time.Second, "the second event", func() bool { return pendingKinds(t, g.ob)[payload.Event] == 2 })
	t.Logf("event durable after %v", time.Since(at).Round(time.Millisecond))
}

// A busy gateway commits telemetry once half of its bound on readings not
// yet durable is in flight, without waiting for the window (an hour here,
// so only that can end it), and keeps encoding the next half meanwhile.
// Every reading lands once and in the order it was emitted: the committer
// hands its backlog over in slices and must neither drop, repeat nor
// reorder one.
func TestCommitterPipelinesTelemetryInOrder(t *testing.T) {
	g, stop := committer(t, time.Hour)
	ctx := context.Background()
	const n, perEmit = 15_000, 10 // more than half the bound, less than all of it
	for i := 0; i < n; i += perEmit {
		recs := make([]payload.Record, perEmit)
		for j := range recs {
			recs[j] = bayReading(i + j)
		}
		g.Emit(ctx, payload.Telemetry, recs)
	}
	testenv.WaitFor(t, 30*time.Second, "half the bound durable without an event or the window's end", func() bool {
		return g.ob.Stats().AppendedRecords >= 10_000
	})
	stop()
	if g.refused.Load() != 0 {
		t.Fatalf("%d records refused", g.refused.Load())
	}
	cfg := g.cfg
	ob, err := outbox.Open(outbox.Options{Dir: cfg.Outbox.Path, Site: cfg.Site, Gateway: cfg.Gateway, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	msgs, err := ob.Pending(ctx, 0, 1_000)
	if err != nil {
		t.Fatal(err)
	}
	next := 0 // bayReading(i) carries i in its time's nanoseconds
	var last uint64
	for _, m := range msgs {
		if m.Seq <= last {
			t.Fatalf("seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		b, err := payload.DecodeBatch(m.Body)
		if err != nil {
			t.Fatalf("seq %d: %v", m.Seq, err)
		}
		for _, r := range b.Records {
			if got := r.Time.Nanosecond(); got != next {
				t.Fatalf("seq %d: reading %d where %d was emitted next", m.Seq, got, next)
			}
			next++
		}
	}
	if next != n {
		t.Fatalf("%d readings on disk after the stop, want %d", next, n)
	}
}

// A record the outbox refuses costs only the Emit it came in: the readings
// of other devices emitted around it are stored (the committer hands many
// Emits to the outbox as one append).
func TestBadRecordRefusesOnlyItsEmit(t *testing.T) {
	g, stop := committer(t, 0)
	ctx := context.Background()
	bad := bayReading(1)
	bad.Measurement = "9lives" // not a valid name
	for i := range 100 {
		if i == 50 {
			g.Emit(ctx, payload.Telemetry, []payload.Record{bad, bayReading(1000)})
		}
		g.Emit(ctx, payload.Telemetry, []payload.Record{bayReading(i)})
	}
	stop()
	if n := g.refused.Load(); n != 2 {
		t.Errorf("%d records refused, want the bad Emit's 2", n)
	}
	cfg := g.cfg
	ob, err := outbox.Open(outbox.Options{Dir: cfg.Outbox.Path, Site: cfg.Site, Gateway: cfg.Gateway, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if n := ob.Stats().Unacked.Records; n != 100 {
		t.Errorf("%d records stored, want the other 100", n)
	}
}
