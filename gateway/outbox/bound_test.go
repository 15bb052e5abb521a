package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/luling-edge/luling/payload"
)

func boundOptions(dir string, lb *logBuf) Options {
	opts := testOptions(dir, lb)
	opts.MaxBytes = 16 << 10
	opts.SegmentBytes = 2 << 10
	return opts
}

func TestBoundDropsOldestTelemetryKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := boundOptions(dir, &lb)
	o := mustOpen(t, opts)
	defer o.Close()
	for i := range 3 {
		appendOne(t, o, payload.Event, door("d-11", i)) // seqs 1..3
	}
	const n = 200
	for i := range n {
		appendOne(t, o, payload.Telemetry, bay("bay-11", i)) // seqs 4..203
		if i == 1 {
			o.Ack(4, 5) // delivered: must not count as dropped
		}
		if st := o.Stats(); st.Bytes > opts.MaxBytes {
			t.Fatalf("after telemetry append %d: %d bytes on disk, bound %d", i, st.Bytes, opts.MaxBytes)
		}
	}
	msgs := pendingAll(t, o)
	got := seqsOf(msgs)
	if !slices.Equal(got[:3], []uint64{1, 2, 3}) {
		t.Fatalf("events were dropped: pending starts %v", got[:3])
	}
	first := got[3]
	if !slices.Equal(got[3:], seqRangeList(first, 3+n)) {
		t.Fatalf("surviving telemetry is not the newest contiguous run: %v", got[3:])
	}
	if first <= 6 {
		t.Fatalf("nothing was dropped (oldest surviving telemetry seq %d)", first)
	}
	// Seqs 4..first-1 are gone; 4 and 5 were acknowledged, the rest lost.
	lost := int64(first - 6)
	st := o.Stats()
	if st.DroppedOldest != (Counts{lost, lost}) {
		t.Fatalf("DroppedOldest %+v, want %d messages and %d records", st.DroppedOldest, lost, lost)
	}
	if st.Unacked.Messages != int64(len(msgs)) || st.RefusedTelemetry != 0 || st.RefusedEvents != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(lb.String(), "dropped oldest telemetry segment") || !strings.Contains(lb.String(), "dropped_messages=") {
		t.Fatalf("drops not logged with counts:\n%s", lb.String())
	}
	for _, p := range segPath(t, dir, payload.Telemetry) {
		_, f, _ := parseSegmentName(p[len(dir)+1:])
		if f < first {
			t.Fatalf("segment %s of dropped messages still on disk", p)
		}
	}
	// The counter keeps going, and a restart sees the same survivors.
	o.Close()
	o = mustOpen(t, opts)
	if again := seqsOf(pendingAll(t, o)); !slices.Equal(again, got) {
		t.Fatalf("after restart pending %v, want %v", again, got)
	}
}

func TestBoundRefusesTelemetryThenEventsPastCeiling(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := boundOptions(dir, &lb)
	o := mustOpen(t, opts)
	defer o.Close()
	ctx := context.Background()
	for i := range 10 {
		appendOne(t, o, payload.Telemetry, bay("bay-12", i))
	}
	events := 0
	overMax := false
	var err error
	for i := range 10000 {
		if err = o.Append(ctx, payload.Event, []payload.Record{door("d-12", i), door("d-12", i)}); err != nil {
			break
		}
		events++
		st := o.Stats()
		if st.Bytes > opts.MaxBytes {
			overMax = true
			if st.DroppedOldest.Messages != 10 {
				t.Fatalf("events went over MaxBytes while telemetry was kept (dropped %d of 10)", st.DroppedOldest.Messages)
			}
		}
		if ceiling := opts.MaxBytes + opts.MaxBytes/4; st.Bytes > ceiling {
			t.Fatalf("%d bytes on disk, above the ceiling %d", st.Bytes, ceiling)
		}
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("events past the ceiling: %v, want ErrFull", err)
	}
	if !overMax {
		t.Fatal("events were refused before using the room between MaxBytes and the ceiling")
	}
	st := o.Stats()
	if st.RefusedEvents != 2 || st.DroppedOldest != (Counts{10, 10}) {
		t.Fatalf("RefusedEvents %d (want 2), DroppedOldest %+v (want 10/10)", st.RefusedEvents, st.DroppedOldest)
	}
	if err := o.Append(ctx, payload.Telemetry, []payload.Record{bay("bay-12", 100), bay("bay-12", 101), bay("bay-12", 102)}); !errors.Is(err, ErrFull) {
		t.Fatalf("telemetry with only events left: %v, want ErrFull", err)
	}
	st = o.Stats()
	if st.RefusedTelemetry != 3 {
		t.Fatalf("RefusedTelemetry %d, want 3", st.RefusedTelemetry)
	}
	if d := st.Dropped(); d.Records != 10+2+3 || d.Messages != 10 {
		t.Fatalf("Dropped() %+v, want 10 messages, 15 records", d)
	}
	// Every accepted event is still there.
	msgs := pendingAll(t, o)
	recs := 0
	for _, m := range msgs {
		if m.Kind != payload.Event {
			t.Fatalf("message %d is %s; telemetry should be gone", m.Seq, m.Kind)
		}
		recs += m.Records
	}
	if recs != 2*events {
		t.Fatalf("%d event records pending, want %d", recs, 2*events)
	}
	// Once the uplink delivers, there is room again.
	o.Ack(seqsOf(msgs)...)
	syncHousekeep(t, o)
	appendOne(t, o, payload.Telemetry, bay("bay-12", 200))
	if st := o.Stats(); st.Unacked.Messages != 1 {
		t.Fatalf("after draining: %d unacked, want 1", st.Unacked.Messages)
	}
}
