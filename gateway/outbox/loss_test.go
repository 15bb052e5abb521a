package outbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/luling-edge/luling/payload"
)

func loss(first, last uint64, r payload.LossReason) payload.Loss {
	return payload.Loss{SeqRange: payload.SeqRange{First: first, Last: last}, Reason: r}
}

// A flipped byte (or a flipped length) inside one entry loses that entry
// alone: the entries after it in the same segment are kept, and the lost
// one is counted and declared once, across restarts.
func TestRecoveryDamagedEntryLosesOnlyItself(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, ents []entry)
	}{
		{"flipped body byte", func(t *testing.T, path string, ents []entry) {
			flip(t, path, int64(ents[2].off)+frameOverhead+5)
		}},
		{"flipped length", func(t *testing.T, path string, ents []entry) {
			flip(t, path, int64(ents[2].off)+1)
		}},
		{"three flipped bytes", func(t *testing.T, path string, ents []entry) {
			for _, d := range []int64{3, 30, 60} {
				flip(t, path, int64(ents[2].off)+d)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var lb logBuf
			opts := testOptions(dir, &lb)
			path, ents := fiveMessages(t, opts)
			tc.damage(t, path, ents)

			o := mustOpen(t, opts)
			if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, []uint64{1, 2, 4, 5}) {
				t.Fatalf("after recovery seqs %v, want [1 2 4 5]", got)
			}
			st := o.Stats()
			if st.DroppedMissing != (Counts{1, 1}) || st.SkippedBytes != ents[2].frameLen() || st.TruncatedBytes != 0 {
				t.Fatalf("DroppedMissing %+v (want 1/1), SkippedBytes %d (want %d), TruncatedBytes %d (want 0)",
					st.DroppedMissing, st.SkippedBytes, ents[2].frameLen(), st.TruncatedBytes)
			}
			if got, want := o.Losses(), []payload.Loss{loss(3, 3, payload.LossMissing)}; !slices.Equal(got, want) {
				t.Fatalf("losses %v, want %v", got, want)
			}
			if !strings.Contains(lb.String(), "damaged entry") {
				t.Errorf("damage not logged:\n%s", lb.String())
			}
			appendOne(t, o, payload.Telemetry, bay("bay-9", 60))
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			// The second open finds the same damage but counts nothing new:
			// the loss is on record.
			o = mustOpen(t, opts)
			defer o.Close()
			if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, []uint64{1, 2, 4, 5, 6}) {
				t.Fatalf("after the second open seqs %v, want [1 2 4 5 6]", got)
			}
			if st := o.Stats(); st.DroppedMissing != (Counts{}) || len(o.Losses()) != 1 {
				t.Fatalf("second open: DroppedMissing %+v, losses %v; want nothing new", st.DroppedMissing, o.Losses())
			}
		})
	}
}

// Truncating a segment at an entry boundary (nothing for a scan to notice)
// or deleting it never makes the counter go back: the numbers are declared
// missing and new messages get higher ones.
func TestTruncatedOrDeletedSegmentNeverReusesSeq(t *testing.T) {
	for _, deleteIt := range []bool{false, true} {
		t.Run(map[bool]string{false: "truncated", true: "deleted"}[deleteIt], func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(dir, &logBuf{})
			o := mustOpen(t, opts)
			for i := range 10 {
				appendOne(t, o, payload.Telemetry, bay("bay-3", i))
			}
			off := o.logs[0].segs[0].entries[5].off
			o.Close()
			path := segPath(t, dir, payload.Telemetry)[0]
			first := uint64(6)
			if deleteIt {
				os.Remove(path)
				first = 1
			} else {
				truncate(t, path, int64(off))
			}

			o = mustOpen(t, opts)
			defer o.Close()
			want := []payload.Loss{loss(first, 10, payload.LossMissing)}
			if got := o.Losses(); !slices.Equal(got, want) {
				t.Fatalf("losses %v, want %v", got, want)
			}
			if st := o.Stats(); st.NextSeq != 11 || st.DroppedMissing.Messages != int64(11-first) {
				t.Fatalf("NextSeq %d (want 11), DroppedMissing %+v (want %d)", st.NextSeq, st.DroppedMissing, 11-first)
			}
			appendOne(t, o, payload.Telemetry, bay("bay-3", 20))
			msgs := pendingAll(t, o)
			if got := msgs[len(msgs)-1].Seq; got != 11 {
				t.Fatalf("new message got seq %d, want 11", got)
			}
		})
	}
}

// After an unclean stop the counter resumes above the reservation, and the
// reserved numbers not found on disk are declared unused, not lost.
func TestUncleanStopSkipsReservedNumbers(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir, &logBuf{})
	o := mustOpen(t, opts)
	defer o.Close()
	for i := range 10 {
		appendOne(t, o, payload.Telemetry, bay("bay-4", i))
	}
	// A copy of the folder while the outbox runs is what a power cut leaves.
	crash := t.TempDir()
	for _, n := range append(segFiles(t, dir), stateName) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(crash, n), b, 0o600)
	}
	c := mustOpen(t, testOptions(crash, &logBuf{}))
	defer c.Close()
	if got := seqsOf(pendingAll(t, c)); !slices.Equal(got, seqRangeList(1, 10)) {
		t.Fatalf("seqs %v, want 1..10", got)
	}
	want := []payload.Loss{loss(11, reserveBlock, payload.LossUnused)}
	if got := c.Losses(); !slices.Equal(got, want) {
		t.Fatalf("losses %v, want %v", got, want)
	}
	st := c.Stats()
	if st.NextSeq != reserveBlock+1 || st.Skipped != reserveBlock-10 || st.Dropped() != (Counts{}) {
		t.Fatalf("NextSeq %d (want %d), Skipped %d (want %d), Dropped %+v (want none)",
			st.NextSeq, reserveBlock+1, st.Skipped, reserveBlock-10, st.Dropped())
	}
	// Fsyncs stay bounded: 10 commits wrote the state file once (the
	// reservation) besides opening.
	if w := o.Stats().StateWrites; w > 2 {
		t.Fatalf("%d state writes for 10 appends, want at most 2 (open + one reservation)", w)
	}
}

// Numbers acknowledged and deleted above an unacknowledged message are on
// record as acknowledged: a restart does not mistake them for lost ones.
func TestDeletedAckedSegmentsAreNotDeclaredLost(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir, &logBuf{})
	opts.SegmentBytes = 1 << 10
	opts.MaxBytes = 1 << 20
	o := mustOpen(t, opts)
	appendOne(t, o, payload.Event, door("door-1", 0)) // seq 1, stays unacked
	for i := range 40 {
		appendOne(t, o, payload.Telemetry, bay("bay-5", i))
	}
	o.Ack(seqRangeList(2, 41)...)
	if err := o.housekeepSerial(); err != nil {
		t.Fatal(err)
	}
	if n := len(segPath(t, dir, payload.Telemetry)); n != 1 {
		t.Fatalf("%d telemetry segments left, want 1 (the active one)", n)
	}
	o.Close()
	o = mustOpen(t, opts)
	defer o.Close()
	if l := o.Losses(); len(l) != 0 {
		t.Fatalf("losses %v after deleting acknowledged segments, want none", l)
	}
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("pending %v, want [1]", got)
	}
}

func TestForgetLossesAndPolicyDropsDeclared(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir, &logBuf{})
	opts.SegmentBytes = 1 << 10
	opts.MaxBytes = 4 << 10
	o := mustOpen(t, opts)
	for i := range 60 {
		appendOne(t, o, payload.Telemetry, bay("bay-6", i))
	}
	st := o.Stats()
	ls := o.Losses()
	var declared int64
	for _, l := range ls {
		if l.Reason != payload.LossFull {
			t.Fatalf("loss %v, want reason full", l)
		}
		declared += int64(l.Len())
	}
	if st.DroppedOldest.Messages == 0 || declared != st.DroppedOldest.Messages || ls[0].First != 1 {
		t.Fatalf("dropped %d messages, declared %d in %v (want the same, from seq 1)", st.DroppedOldest.Messages, declared, ls)
	}
	o.ForgetLosses(ls[0].Last)
	if got := o.Losses(); len(got) != len(ls)-1 {
		t.Fatalf("after ForgetLosses(%d): %v", ls[0].Last, got)
	}
	o.Close()
	o = mustOpen(t, opts)
	defer o.Close()
	if got := o.Losses(); !slices.Equal(got, ls[1:]) {
		t.Fatalf("losses after restart %v, want %v", got, ls[1:])
	}
	if st := o.Stats(); st.DroppedMissing != (Counts{}) {
		t.Fatalf("restart after policy drops counted %+v missing", st.DroppedMissing)
	}
}

func TestAddLossMergesAndSkipsCovered(t *testing.T) {
	o := &Outbox{}
	o.addLossLocked(payload.SeqRange{First: 10, Last: 20}, payload.LossFull)
	o.addLossLocked(payload.SeqRange{First: 15, Last: 30}, payload.LossCorrupt)
	o.addLossLocked(payload.SeqRange{First: 5, Last: 9}, payload.LossFull)
	o.addLossLocked(payload.SeqRange{First: 1, Last: 40}, payload.LossMissing)
	want := []payload.Loss{
		loss(1, 4, payload.LossMissing), loss(5, 20, payload.LossFull),
		loss(21, 30, payload.LossCorrupt), loss(31, 40, payload.LossMissing),
	}
	if !slices.Equal(o.losses, want) {
		t.Fatalf("losses %v, want %v", o.losses, want)
	}
}

// Any MaxBytes the config accepts (from 1 MiB) opens with the default
// segment size, and a drop by the bound frees one small segment, not half
// the outbox.
func TestSmallMaxBytesDropsOneSegmentAtATime(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.MaxBytes = 1 << 20
	o := mustOpen(t, opts)
	defer o.Close()
	seg := opts.MaxBytes / 16
	for i := 0; o.Stats().DroppedOldest.Messages == 0; i++ {
		if i > 100000 {
			t.Fatal("no drop after 100000 appends")
		}
		appendOne(t, o, payload.Telemetry, bay("bay-8", i))
	}
	st := o.Stats()
	if st.Bytes < opts.MaxBytes-2*seg {
		t.Fatalf("after the first drop %d bytes are left of %d: more than one %d-byte segment went", st.Bytes, opts.MaxBytes, seg)
	}
}
