package fleet

import (
	"reflect"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func rng(a, b uint64) payload.SeqRange { return payload.SeqRange{First: a, Last: b} }

func TestSeqDeclareAndThrough(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// A declaration before any message starts tracking.
	var first Seq
	if !first.Declare(rng(1, 1), false, t0) || first.Through() != 1 || first.Stats().DeclaredLost != 1 {
		t.Fatalf("declaration of 1 on a fresh tracker: through %d, %+v", first.Through(), first.Stats())
	}
	if r := first.Observe(2, 1002, t0); r != SeqInOrder {
		t.Fatalf("2 after a declared 1: %v, want in-order", r)
	}
	var s Seq
	for _, n := range []uint64{1, 2, 3, 7, 8, 12} {
		s.Observe(n, 1000+n, t0)
	}
	// Gaps 4..6 and 9..11 are open: through stops before the first.
	if got := s.Through(); got != 3 {
		t.Fatalf("through %d, want 3", got)
	}
	if got := s.Gaps(t0, 10); !reflect.DeepEqual(got, []payload.SeqRange{rng(4, 6), rng(9, 11)}) {
		t.Fatalf("gaps %v", got)
	}
	// The gateway declares 5..10 lost: 5, 6, 9, 10 were missing, 7 and 8
	// were delivered and stay so.
	if !s.Declare(rng(5, 10), false, t0) {
		t.Fatal("declaration refused")
	}
	st := s.Stats()
	if st.DeclaredLost != 4 || st.GapsOpen != 2 || st.Lost != 0 {
		t.Fatalf("declared %d (want 4), gaps open %d (want 2: 4 and 11), lost %d", st.DeclaredLost, st.GapsOpen, st.Lost)
	}
	if got := s.Gaps(t0, 10); !reflect.DeepEqual(got, []payload.SeqRange{rng(4, 4), rng(11, 11)}) {
		t.Fatalf("gaps after the declaration %v", got)
	}
	// 4 arrives late (a resend), 11 is declared unused: everything up to
	// 12 is accounted for.
	if r := s.Observe(4, 1004, t0); r != SeqReordered {
		t.Fatalf("resent 4: %v", r)
	}
	s.Declare(rng(11, 11), true, t0)
	if got := s.Through(); got != 12 {
		t.Fatalf("through %d, want 12", got)
	}
	// A declaration ahead: 13 is still awaited, 14..20 are declared, the
	// next message 21 is in order.
	s.Declare(rng(14, 20), false, t0)
	if r := s.Observe(21, 1021, t0); r != SeqInOrder {
		t.Fatalf("21 after a declaration up to 20: %v, want in-order", r)
	}
	if got := s.Through(); got != 12 {
		t.Fatalf("through %d, want 12 (13 awaited)", got)
	}
	st = s.Stats()
	if st.DeclaredLost != 4+7 || st.Skipped != 1 || st.GapsOpen != 1 {
		t.Fatalf("stats %+v: want declared 11, skipped 1, one number awaited", st)
	}
	// Implausibly far ahead: ignored, nothing moves.
	if s.Declare(rng(1<<30, 1<<30), false, t0) || s.Stats().LastSeq != 21 {
		t.Fatalf("a declaration 2^30 ahead was applied: %+v", s.Stats())
	}
}

func TestFleetAcksPolicy(t *testing.T) {
	now := time.Unix(5000, 0)
	f := New(time.Minute, func() time.Time { return now })
	p := AckPolicy{Every: time.Second, ResendAfter: 2 * time.Second}
	b := func(seq uint64) *payload.Batch { return &payload.Batch{Site: "s1", Gateway: "gw-a", Seq: seq} }
	for _, n := range []uint64{1, 2, 3} {
		f.Admit(b(n), n)
	}
	acks := f.Acks(p)
	if len(acks) != 1 || acks[0].Through != 3 || acks[0].Resend != nil || acks[0].Site != "s1" || acks[0].Gateway != "gw-a" {
		t.Fatalf("acks %+v, want one through 3", acks)
	}
	if _, err := payload.DecodeAck(payload.EncodeAck(&acks[0])); err != nil {
		t.Fatalf("ack does not pass the gateway's decoder: %v", err)
	}
	f.Admit(b(6), 6)
	if acks := f.Acks(p); len(acks) != 0 {
		t.Fatalf("ack within Every: %+v", acks)
	}
	now = now.Add(time.Second)
	if acks := f.Acks(p); len(acks) != 1 || acks[0].Through != 3 || len(acks[0].Resend) != 0 {
		t.Fatalf("acks %+v, want through 3 and no resend yet (gap younger than ResendAfter)", acks)
	}
	now = now.Add(2 * time.Second)
	acks = f.Acks(p)
	if len(acks) != 1 || !reflect.DeepEqual(acks[0].Resend, []payload.SeqRange{rng(4, 5)}) {
		t.Fatalf("acks %+v, want a resend of 4..5", acks)
	}
	// No traffic, request just made: nothing until ResendAfter again.
	now = now.Add(time.Second)
	if acks := f.Acks(p); len(acks) != 0 {
		t.Fatalf("acks %+v, want none", acks)
	}
	now = now.Add(time.Second)
	if acks := f.Acks(p); len(acks) != 1 || len(acks[0].Resend) != 1 {
		t.Fatalf("acks %+v, want the resend request repeated", acks)
	}
	f.Declare(&payload.Dropped{Site: "s1", Gateway: "gw-a", Losses: []payload.Loss{{SeqRange: rng(4, 5), Reason: payload.LossFull}}})
	now = now.Add(time.Second)
	acks = f.Acks(p)
	if len(acks) != 1 || acks[0].Through != 6 || len(acks[0].Resend) != 0 {
		t.Fatalf("acks %+v, want through 6 after the declaration", acks)
	}
	g, _ := f.Gateway("s1", "gw-a")
	if g.Seq.DeclaredLost != 2 || g.Seq.Lost != 0 {
		t.Fatalf("seq stats %+v", g.Seq)
	}
	// A re-flashed gateway counting from 1 again: no ack with the old
	// through until tracking restarted on its numbers.
	f.Admit(b(1<<30), 1)
	now = now.Add(time.Minute)
	if acks := f.Acks(p); len(acks) != 0 {
		t.Fatalf("ack %+v after an out-of-range number", acks)
	}
	f.Admit(b(1<<30+1), 2)
	if acks := f.Acks(p); len(acks) != 1 || acks[0].Through != 1<<30+1 {
		t.Fatalf("acks %+v after the reset, want through %d", acks, 1<<30+1)
	}
}

// A declaration ahead of the expected number opens a gap before it; that
// gap's numbers share window slots with numbers Window earlier, whose
// hashes must not stay there: the missing message, when it comes, is
// written (reordered), not taken for a conflict. The soak found this after
// a corrupted outbox segment: the gateway declared 616, 618, ... before
// resending 615, 617, ..., and cloudd refused those for good.
func TestSeqDeclareAheadClearsTheGapsWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s Seq
	for n := uint64(1); n <= Window+100; n++ {
		s.Observe(n, 1000+n, t0)
	}
	next := uint64(Window + 101)
	s.Declare(rng(next+1, next+1), false, t0) // next itself is still to come
	s.Declare(rng(next+3, next+9), false, t0) // and next+2
	for _, n := range []uint64{next, next + 2} {
		if r := s.Observe(n, 5000+n, t0); r != SeqReordered {
			t.Fatalf("%d, missing before a declared range, arrives: %v, want reordered", n, r)
		}
	}
	if st := s.Stats(); st.Conflicts != 0 || st.GapsOpen != 0 || st.DeclaredLost != 8 || s.Through() != next+9 {
		t.Fatalf("after the gaps filled: %+v, through %d; want no conflict, nothing open, 8 declared, through %d", st, s.Through(), next+9)
	}
}
