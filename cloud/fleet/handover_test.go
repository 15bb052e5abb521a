package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// A gateway moved to another fleet with its state: the open gap is still
// awaited there, redeliveries of written numbers are duplicates (not a
// conflict, not written again), and new numbers continue in order.
func TestSeqStateMovesWithoutFalseGapOrConflict(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	a := New(time.Minute, clock)
	batch := func(seq uint64) *payload.Batch {
		return &payload.Batch{Site: "s", Gateway: "g", Seq: seq}
	}
	for _, n := range []uint64{1, 2, 3, 5, 6} { // 4 missing
		if res, _ := a.Admit(batch(n), 100+n); !res.Write() {
			t.Fatalf("seq %d: %v", n, res)
		}
	}
	st := a.SeqState("s", "g")
	if st.Next != 7 || len(st.Gaps) != 1 || st.Gaps[0].First != 4 || st.Gaps[0].Last != 4 || !st.Gaps[0].Opened.Equal(t0) {
		t.Fatalf("state = %+v", st)
	}
	got, err := ParseSeqState(st.Marshal())
	if err != nil {
		t.Fatal(err)
	}

	b := New(time.Minute, clock)
	b.RestoreSeq("s", "g", got)
	a.DropSeq("s", "g")
	if acks := a.Acks(AckPolicy{Every: time.Second, ResendAfter: time.Hour}); len(acks) != 0 {
		t.Fatalf("the old owner still acks: %+v", acks)
	}
	now = t0.Add(2 * time.Second)
	// A different hash on purpose: the new owner cannot know the old hashes.
	for _, n := range []uint64{5, 6} {
		if res, _ := b.Admit(batch(n), 999); res != SeqDuplicate {
			t.Fatalf("redelivered %d: %v, want duplicate", n, res)
		}
	}
	if res, _ := b.Admit(batch(4), 104); res != SeqReordered {
		t.Fatalf("gap filled: %v, want reordered", res)
	}
	if res, _ := b.Admit(batch(7), 107); res != SeqInOrder {
		t.Fatalf("next: %v, want in-order", res)
	}
	gw, _ := b.Gateway("s", "g")
	if gw.Seq.GapsOpen != 0 || gw.Seq.Lost != 0 || gw.Seq.Conflicts != 0 || gw.Seq.Duplicates != 2 || gw.Seq.LastSeq != 7 {
		t.Fatalf("new owner's counters: %+v", gw.Seq)
	}
	acks := b.Acks(AckPolicy{Every: time.Second, ResendAfter: time.Hour})
	if len(acks) != 1 || acks[0].Through != 7 {
		t.Fatalf("new owner's ack: %+v", acks)
	}
}

// An open gap keeps its opening time across the move: it expires as lost
// after the grace period counted from when it opened, not from the move.
func TestSeqStateKeepsGapAge(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	b := New(time.Minute, clock)
	b.RestoreSeq("s", "g", SeqState{Next: 10, Gaps: []GapState{{First: 3, Last: 4, Opened: t0.Add(-50 * time.Second)}}})
	now = t0.Add(11 * time.Second)
	if lost := b.Expire(); lost["s/g"] != 2 {
		t.Fatalf("expired %v, want 2 lost for s/g", lost)
	}
}

func TestParseSeqStateErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{`, "sequence state: unexpected end"},
		{`{"next":5,"gaps":[{"first":6,"last":7}]}`, "below next 5"},
		{`{"next":9,"gaps":[{"first":3,"last":4},{"first":2,"last":2}]}`, "gap 1 (2..2)"},
		{`{"next":9223372036854775808}`, "above the highest"},
	} {
		_, err := ParseSeqState([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.in, err, c.want)
		}
	}
}

func FuzzParseSeqState(f *testing.F) {
	f.Add([]byte(`{"next":7,"gaps":[{"first":4,"last":4,"opened":"2026-12-04T12:00:00Z"}]}`))
	f.Add([]byte(`{"next":0}`))
	f.Add([]byte(`{"next":3,"gaps":[{"first":1,"last":2}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseSeqState(b)
		if err != nil {
			return
		}
		var s Seq
		s.restore(st) // must hold any state that parses
		if got := s.state(); got.Next != st.Next || len(got.Gaps) != len(st.Gaps) {
			t.Fatalf("restored %+v, state %+v", st, got)
		}
	})
}
