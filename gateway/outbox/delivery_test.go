package outbox

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// A message the broker acknowledged stays until the cloud confirms it: a
// new session (Pending from 0) reads it again, Confirm lets it go and
// forgets the losses it covers.
func TestSentIsKeptUntilConfirmed(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir, &logBuf{})
	o := mustOpen(t, opts)
	defer o.Close()
	for i := range 6 {
		appendOne(t, o, payload.Telemetry, bay("bay-1", i))
	}
	o.mu.Lock()
	o.addLossLocked(payload.SeqRange{First: 6, Last: 6}, payload.LossCorrupt) // as if declared earlier
	o.mu.Unlock()
	if err := o.Sent(1, 2, 3, 5); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Unacked.Messages != 6 || st.SentThrough != 3 {
		t.Fatalf("after Sent: unacked %d (want 6), SentThrough %d (want 3)", st.Unacked.Messages, st.SentThrough)
	}
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, seqRangeList(1, 6)) {
		t.Fatalf("replay after PUBACKs reads %v, want 1..6 (nothing confirmed)", got)
	}
	if err := o.Confirm(4); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("after Confirm(4) pending %v, want [5 6]", got)
	}
	if len(o.Losses()) != 1 {
		t.Fatalf("Confirm(4) forgot a loss at 6: %v", o.Losses())
	}
	// An ack beyond the counter confirms what exists, no more.
	o.Confirm(100)
	if len(o.Losses()) != 0 || o.Stats().Unacked.Messages != 0 {
		t.Fatalf("after Confirm(100): losses %v, unacked %d", o.Losses(), o.Stats().Unacked.Messages)
	}
	appendOne(t, o, payload.Telemetry, bay("bay-1", 7))
	if n := o.Stats().Unacked.Messages; n != 1 {
		t.Fatalf("a message appended after Confirm(100) counts as confirmed (%d unacked)", n)
	}
	o.Confirm(7)
	// The state file has the confirmation: a restart replays nothing.
	o.Close()
	o = mustOpen(t, opts)
	if n := o.Stats().Unacked.Messages; n != 0 {
		t.Fatalf("after restart %d unacked, want 0", n)
	}
}

// A message sent and never confirmed is let go after HoldFor, counted.
func TestHoldForLetsUnconfirmedGo(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := t0
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.HoldFor = time.Minute
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	o := mustOpen(t, opts)
	defer o.Close()
	for i := range 4 {
		appendOne(t, o, payload.Telemetry, bay("bay-2", i))
	}
	o.Sent(1, 2)
	o.expireHolds() // t0: 1..2 sent
	advance(30 * time.Second)
	o.Sent(3)
	o.expireHolds() // t0+30s: 1..3 sent
	advance(31 * time.Second)
	o.expireHolds() // t0+61s: what was sent at t0 goes
	if st := o.Stats(); st.HoldExpired != 2 || st.Unacked.Messages != 2 {
		t.Fatalf("HoldExpired %d (want 2), unacked %d (want 2: 3 and 4)", st.HoldExpired, st.Unacked.Messages)
	}
	advance(30 * time.Second)
	o.expireHolds()
	st := o.Stats()
	if st.HoldExpired != 3 || st.Unacked.Messages != 1 {
		t.Fatalf("HoldExpired %d (want 3), unacked %d (want 1: never sent)", st.HoldExpired, st.Unacked.Messages)
	}
	msgs, err := o.Pending(context.Background(), 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].Seq != 4 {
		t.Fatalf("pending %v, %v; want only 4 (never sent, never let go)", seqsOf(msgs), err)
	}
}
