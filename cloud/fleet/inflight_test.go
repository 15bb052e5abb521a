package fleet

import (
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Numbers admitted with AdmitPending and not settled hold the ack below
// them and move to another instance as open gaps, which the other
// instance awaits: written there when they come, never taken as
// duplicates. Settled numbers count as written.
func TestPendingNumbersAreNotWrittenYet(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	a := New(time.Minute, clock)
	batch := func(seq uint64) *payload.Batch { return &payload.Batch{Site: "s", Gateway: "g", Seq: seq} }
	for n := uint64(1); n <= 6; n++ {
		if n == 4 {
			continue // a gap
		}
		now = t0.Add(time.Duration(n) * time.Second)
		if res, _ := a.AdmitPending(batch(n), 100+n); !res.Write() {
			t.Fatalf("seq %d: %v", n, res)
		}
	}
	a.Settled("s", "g", 1)
	a.Settled("s", "g", 3) // landed before 2: out of order
	p := AckPolicy{Every: time.Nanosecond, ResendAfter: time.Hour}
	now = t0.Add(time.Minute)
	if acks := a.Acks(p); len(acks) != 1 || acks[0].Through != 1 {
		t.Fatalf("acks %+v, want through 1 (2 in flight)", acks)
	}
	st := a.SeqState("s", "g")
	want := []GapState{{2, 2, t0.Add(2 * time.Second)}, {4, 6, t0.Add(5 * time.Second)}}
	if st.Next != 7 || len(st.Gaps) != 2 || st.Gaps[0] != want[0] || st.Gaps[1].First != 4 || st.Gaps[1].Last != 6 {
		t.Fatalf("state %+v, want next 7 and gaps %v", st, want)
	}
	if !st.Gaps[1].Opened.Equal(want[1].Opened) {
		t.Fatalf("gap 4..6 opened %v, want the oldest of its parts (%v)", st.Gaps[1].Opened, want[1].Opened)
	}
	got, err := ParseSeqState(st.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	b := New(time.Minute, clock)
	b.RestoreSeq("s", "g", got)
	for _, n := range []uint64{2, 5, 6} {
		if res, _ := b.Admit(batch(n), 999); res != SeqReordered {
			t.Fatalf("redelivered %d at the new owner: %v, want written (reordered)", n, res)
		}
	}
	if res, _ := b.Admit(batch(3), 999); res != SeqDuplicate {
		t.Fatalf("settled 3 at the new owner: %v, want duplicate", res)
	}

	for _, n := range []uint64{2, 5, 6} {
		a.Settled("s", "g", n)
	}
	if n := a.InFlight("s", "g"); n != 0 {
		t.Fatalf("%d in flight after settling all", n)
	}
	now = now.Add(time.Second)
	if acks := a.Acks(p); len(acks) != 1 || acks[0].Through != 3 {
		t.Fatalf("acks %+v, want through 3 (4 missing)", acks)
	}
}

// More pending ranges than a state may hold are joined to the closest
// neighbours: the state stays valid and every pending number is awaited.
func TestPendingGapsStayWithinTheLimit(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	f := New(time.Minute, func() time.Time { return now })
	for n := uint64(1); n <= 3*MaxOpenGaps; n++ {
		f.AdmitPending(&payload.Batch{Site: "s", Gateway: "g", Seq: n}, n)
	}
	for n := uint64(1); n <= 3*MaxOpenGaps; n += 2 {
		f.Settled("s", "g", n) // every other one landed
	}
	st := f.SeqState("s", "g")
	if _, err := ParseSeqState(st.Marshal()); err != nil {
		t.Fatalf("state does not parse: %v", err)
	}
	for n := uint64(2); n <= 3*MaxOpenGaps; n += 2 {
		in := false
		for _, g := range st.Gaps {
			in = in || (n >= g.First && n <= g.Last)
		}
		if !in {
			t.Fatalf("pending %d is in no gap of %d", n, len(st.Gaps))
		}
	}
}
