package outbox

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func TestAppendSealsBatchesBytesOfAppendBatch(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.MaxBatchRecords = 3
	o := mustOpen(t, opts)
	defer o.Close()

	var recs []payload.Record
	for i := range 10 {
		recs = append(recs, bay("bay-1", i))
	}
	appendOne(t, o, payload.Telemetry, recs...)
	appendOne(t, o, payload.Event, door("d-1", 0), door("d-1", 1))

	msgs := pendingAll(t, o)
	if got, want := seqsOf(msgs), seqRangeList(1, 5); !slices.Equal(got, want) {
		t.Fatalf("seqs %v, want %v", got, want)
	}
	wantRecs := []int{3, 3, 3, 1, 2}
	next := 0
	for i, m := range msgs {
		if m.Records != wantRecs[i] {
			t.Errorf("message %d: %d records, want %d", m.Seq, m.Records, wantRecs[i])
		}
		b := decode(t, m)
		wantKind := payload.Telemetry
		if i == 4 {
			wantKind = payload.Event
		}
		if b.Kind != wantKind {
			t.Errorf("message %d: kind %s, want %s", m.Seq, b.Kind, wantKind)
		}
		// The body must be exactly what AppendBatch writes for the batch.
		ref, err := payload.AppendBatch(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ref, m.Body) {
			t.Errorf("message %d: body differs from AppendBatch:\n got %s\nwant %s", m.Seq, m.Body, ref)
		}
		if b.Sent.IsZero() || b.Sent.Before(t0) {
			t.Errorf("message %d: sent %v, want the fake clock's seal time", m.Seq, b.Sent)
		}
		if wantKind == payload.Telemetry {
			for _, r := range b.Records {
				if r.Fields["n"].Int() != int64(next) {
					t.Fatalf("message %d: record n=%d, want %d (order lost)", m.Seq, r.Fields["n"].Int(), next)
				}
				next++
			}
		}
	}
	st := o.Stats()
	if st.AppendedRecords != 12 || st.AppendedMessages != 5 || st.NextSeq != 6 || st.Unacked.Messages != 5 || st.Unacked.Records != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestAppendSplitsByBytes(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.MaxBatchBytes = 1024
	o := mustOpen(t, opts)
	defer o.Close()
	var recs []payload.Record
	for i := range 40 {
		recs = append(recs, bay("bay-2", i))
	}
	appendOne(t, o, payload.Telemetry, recs...)
	msgs := pendingAll(t, o)
	if len(msgs) < 4 {
		t.Fatalf("%d messages for 40 records of ~180 bytes with MaxBatchBytes 1024; want several", len(msgs))
	}
	total := 0
	for _, m := range msgs {
		if len(m.Body) > 1024 {
			t.Errorf("message %d: body %d bytes > MaxBatchBytes 1024", m.Seq, len(m.Body))
		}
		total += len(decode(t, m).Records)
	}
	if total != 40 {
		t.Errorf("%d records in the messages, want 40", total)
	}
}

func TestAppendRejectsWhatTheCloudWould(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	o := mustOpen(t, testOptions(dir, &lb))
	defer o.Close()
	good := bay("bay-3", 1)
	cases := map[string]func(r *payload.Record){
		"bad measurement": func(r *payload.Record) { r.Measurement = "parking bay" },
		"zero time":       func(r *payload.Record) { r.Time = time.Time{} },
		"nan":             func(r *payload.Record) { r.Fields["distance_cm"] = payload.Float(math.NaN()) },
		"site tag":        func(r *payload.Record) { r.Tags = map[string]string{"site": "x", "device": "d", "bay": "1"} },
		"empty tag":       func(r *payload.Record) { r.Tags["zone"] = "" },
		"no fields":       func(r *payload.Record) { r.Fields = nil },
		"contract type":   func(r *payload.Record) { r.Fields["occupied"] = payload.Int(1) },
		"missing tag":     func(r *payload.Record) { delete(r.Tags, "bay") },
	}
	for name, mod := range cases {
		r := good
		r.Tags = map[string]string{}
		for k, v := range good.Tags {
			r.Tags[k] = v
		}
		r.Fields = map[string]payload.Value{}
		for k, v := range good.Fields {
			r.Fields[k] = v
		}
		mod(&r)
		err := o.Append(context.Background(), payload.Telemetry, []payload.Record{good, r})
		if err == nil || !strings.Contains(err.Error(), "record 1") || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: err %v, want an error naming the outbox and record 1", name, err)
		}
	}
	if st := o.Stats(); st.AppendedRecords != 0 {
		t.Errorf("bad appends stored %d records; an Append is all or nothing", st.AppendedRecords)
	}
	if err := o.Append(context.Background(), payload.Kind(9), []payload.Record{good}); err == nil {
		t.Error("unknown kind accepted")
	}
}

// TestGroupCommitSharesOneFsync queues appends while the committer waits
// for its window; Close ends the window, and the whole queue must go out as
// one group: one write and fsync of one segment plus one folder fsync.
func TestGroupCommitSharesOneFsync(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.CommitInterval = time.Hour
	o := mustOpen(t, opts)
	base := o.Stats()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-4", i)})
		}()
	}
	for {
		o.mu.Lock()
		q := len(o.queue)
		o.mu.Unlock()
		if q == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	st := o.Stats()
	if st.Groups != 1 || st.AppendedRecords != n || st.AppendedMessages != 1 {
		t.Errorf("groups %d, records %d, messages %d; want 1 group, %d records in 1 message", st.Groups, st.AppendedRecords, st.AppendedMessages, n)
	}
	if got := st.Fsyncs - base.Fsyncs - 2*st.StateWrites + 2*base.StateWrites; got != 2 {
		t.Errorf("%d data fsyncs for one group, want 2 (segment + folder)", got)
	}
	o2 := mustOpen(t, testOptions(dir, &lb))
	defer o2.Close()
	msgs := pendingAll(t, o2)
	if len(msgs) != 1 || len(decode(t, msgs[0]).Records) != n {
		t.Fatalf("after reopen: %d messages, want 1 with %d records", len(msgs), n)
	}
}

func TestAppendCanceledBeforeCommitStoresNothing(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.CommitInterval = time.Hour
	o := mustOpen(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Append(ctx, payload.Telemetry, []payload.Record{bay("bay-5", 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with canceled ctx: %v, want context.Canceled", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.AppendedRecords != 0 {
		t.Fatalf("canceled append stored %d records", st.AppendedRecords)
	}
	if err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-5", 2)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	o := mustOpen(t, testOptions(dir, &lb))
	defer o.Close()
	if o2, err := Open(testOptions(dir, &lb)); err == nil {
		o2.Close()
		t.Fatal("second Open of the same folder succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an 'in use' error", err)
	}
}

func TestOpenValidatesOptions(t *testing.T) {
	var lb logBuf
	for name, mod := range map[string]func(*Options){
		"no dir":      func(o *Options) { o.Dir = "" },
		"bad site":    func(o *Options) { o.Site = "Lot 7" },
		"bad gateway": func(o *Options) { o.Gateway = "" },
		"tiny seg":    func(o *Options) { o.SegmentBytes = 10 },
		"max < seg":   func(o *Options) { o.MaxBytes = 2 << 10; o.SegmentBytes = 4 << 10 },
		"too many":    func(o *Options) { o.MaxBatchRecords = payload.MaxRecords + 1 },
	} {
		opts := testOptions(t.TempDir(), &lb)
		mod(&opts)
		if o, err := Open(opts); err == nil {
			o.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func TestAckOutOfOrderDeletesSegmentsAndRestartResumes(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.SegmentBytes = 1 << 10 // a few messages per segment
	o := mustOpen(t, opts)
	for i := range 30 {
		appendOne(t, o, payload.Telemetry, bay("bay-6", i))
		if i%10 == 9 {
			appendOne(t, o, payload.Event, door("d-6", i))
		}
	}
	// 33 messages: telemetry and events interleaved.
	all := pendingAll(t, o)
	if got := seqsOf(all); !slices.Equal(got, seqRangeList(1, 33)) {
		t.Fatalf("seqs %v, want 1..33", got)
	}
	tFiles := len(segPath(t, dir, payload.Telemetry))
	if tFiles < 3 {
		t.Fatalf("%d telemetry segments; want several with SegmentBytes 1 KiB", tFiles)
	}
	// The first telemetry segment's messages, acked in reverse order, all
	// but its first: the segment must stay.
	firstSeg := o.logs[0].segs[0]
	var firstSeqs []uint64
	for _, e := range firstSeg.entries {
		firstSeqs = append(firstSeqs, e.seq)
	}
	for i := len(firstSeqs) - 1; i >= 1; i-- {
		o.Ack(firstSeqs[i])
	}
	o.Ack(999, 0) // unknown: ignored
	syncHousekeep(t, o)
	if _, err := os.Stat(firstSeg.path); err != nil {
		t.Fatalf("segment with an unacked message was deleted: %v", err)
	}
	o.Ack(firstSeqs[0])
	syncHousekeep(t, o)
	if _, err := os.Stat(firstSeg.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fully acked segment %s still there (err %v)", firstSeg.path, err)
	}
	// Ack every third message of the rest, out of order.
	acked := map[uint64]bool{}
	for _, s := range firstSeqs {
		acked[s] = true
	}
	for i := len(all) - 1; i >= 0; i-- {
		if s := all[i].Seq; s%3 == 0 {
			o.Ack(s)
			acked[s] = true
		}
	}
	var wantUnacked []uint64
	for _, m := range all {
		if !acked[m.Seq] {
			wantUnacked = append(wantUnacked, m.Seq)
		}
	}
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, wantUnacked) {
		t.Fatalf("pending after acks %v, want %v", got, wantUnacked)
	}
	if st := o.Stats(); st.LastAcked != 33 || st.AckedThrough != firstSeqs[len(firstSeqs)-1] {
		t.Errorf("last acked %d, acked through %d; want 33 and %d", st.LastAcked, st.AckedThrough, firstSeqs[len(firstSeqs)-1])
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o = mustOpen(t, opts)
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, wantUnacked) {
		t.Fatalf("after restart pending %v, want %v", got, wantUnacked)
	}
	appendOne(t, o, payload.Telemetry, bay("bay-6", 100))
	if st := o.Stats(); st.NextSeq != 35 {
		t.Fatalf("next seq after restart and one append %d, want 35", st.NextSeq)
	}
	// Acknowledge everything: every segment but the active one goes; after a
	// restart nothing is pending and the counter still continues.
	o.Ack(seqRangeList(1, 34)...)
	syncHousekeep(t, o)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, opts)
	if files := segFiles(t, dir); len(files) != 0 {
		t.Errorf("segments left after everything was acked and reopened: %v", files)
	}
	st := o.Stats()
	if st.Unacked.Messages != 0 || st.NextSeq != 35 || st.Bytes != 0 {
		t.Fatalf("after all acked: %+v; want nothing unacked, next seq 35, 0 bytes", st)
	}
	appendOne(t, o, payload.Event, door("d-6", 101))
	msgs := pendingAll(t, o)
	if len(msgs) != 1 || msgs[0].Seq != 35 {
		t.Fatalf("after all segments were deleted, new message seqs %v, want [35]", seqsOf(msgs))
	}
	o.Close()
}

// syncHousekeep makes the committer run its housekeeping (delete fully
// acknowledged segments, write the state file) now and waits for it.
func syncHousekeep(t *testing.T, o *Outbox) {
	t.Helper()
	if err := o.housekeepSerial(); err != nil {
		t.Fatal(err)
	}
}

func TestPendingBlocksRespectsAfterAndMaxAndMerges(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	o := mustOpen(t, testOptions(dir, &lb))
	defer o.Close()

	// Blocks until there is data.
	got := make(chan []payload.Message, 1)
	go func() {
		msgs, err := o.Pending(context.Background(), 0, 10)
		if err != nil {
			t.Error(err)
		}
		got <- msgs
	}()
	appendOne(t, o, payload.Event, door("d-7", 1))
	if msgs := <-got; len(msgs) != 1 || msgs[0].Seq != 1 || msgs[0].Kind != payload.Event {
		t.Fatalf("blocked Pending returned %v", seqsOf(msgs))
	}
	// Ends with the context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := o.Pending(ctx, 1, 10)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pending after cancel: %v", err)
	}

	for i := 2; i <= 9; i++ {
		if i%3 == 0 {
			appendOne(t, o, payload.Event, door("d-7", i))
		} else {
			appendOne(t, o, payload.Telemetry, bay("bay-7", i))
		}
	}
	ctx = context.Background()
	msgs, err := o.Pending(ctx, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(msgs); !slices.Equal(got, []uint64{5, 6, 7}) {
		t.Fatalf("Pending(after 4, max 3) = %v, want [5 6 7]", got)
	}
	kinds := []payload.Kind{msgs[0].Kind, msgs[1].Kind, msgs[2].Kind}
	if !slices.Equal(kinds, []payload.Kind{payload.Telemetry, payload.Event, payload.Telemetry}) {
		t.Fatalf("kinds %v, want telemetry, events, telemetry (merged by seq)", kinds)
	}
	o.Ack(1, 3, 6)
	msgs, err = o.Pending(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(msgs); !slices.Equal(got, []uint64{2, 4, 5, 7, 8, 9}) {
		t.Fatalf("replay from 0 = %v, want unacked only [2 4 5 7 8 9]", got)
	}
	for _, m := range msgs {
		decode(t, m)
	}
	// Nothing above 9: blocks; closing ends it with ErrClosed.
	go func() {
		_, err := o.Pending(ctx, 9, 1)
		done <- err
	}()
	o.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Pending across Close: %v, want ErrClosed", err)
	}
	if _, err := o.Pending(ctx, 0, 0); err == nil {
		t.Fatal("max 0 accepted")
	}
}

func TestStateFileCorruptResendsEverything(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	o := mustOpen(t, opts)
	for i := range 5 {
		appendOne(t, o, payload.Telemetry, bay("bay-8", i))
	}
	o.Ack(1, 2)
	o.Close()
	path := dir + "/" + stateName
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, opts)
	defer o.Close()
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, seqRangeList(1, 5)) {
		t.Fatalf("with a corrupt state file pending = %v, want all of 1..5 again", got)
	}
	if !strings.Contains(lb.String(), "state file unreadable") {
		t.Fatalf("no log about the state file:\n%s", lb.String())
	}
	appendOne(t, o, payload.Telemetry, bay("bay-8", 9))
	if st := o.Stats(); st.NextSeq != 7 {
		t.Fatalf("next seq %d, want 7", st.NextSeq)
	}
}

// TestConcurrentAppendDrainAck runs appenders against an uplink-like
// drainer that acknowledges as it goes, with small segments so that files
// are created and deleted under it. Every record arrives once, in order.
func TestConcurrentAppendDrainAck(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.SegmentBytes = 2 << 10
	opts.CommitInterval = 100 * time.Microsecond
	opts.AckPersistInterval = time.Millisecond
	o := mustOpen(t, opts)
	defer o.Close()
	const workers, per = 4, 150
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := "bay-c" + string(rune('0'+g))
			for n := range per {
				kind, rec := payload.Telemetry, bay(dev, n)
				if g == 0 {
					kind, rec = payload.Event, door(dev, n)
				}
				if err := o.Append(context.Background(), kind, []payload.Record{rec}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := map[string]int{}
	var after uint64
	for seen := 0; seen < workers*per; {
		msgs, err := o.Pending(context.Background(), after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Seq != after+1 {
				t.Fatalf("seq %d after %d", m.Seq, after)
			}
			after = m.Seq
			for _, r := range decode(t, m).Records {
				dev := r.Tags["device"] + r.Tags["door"]
				if n := int(r.Fields["n"].Int()); n != next[dev] {
					t.Fatalf("%s: n=%d, want %d", dev, n, next[dev])
				}
				next[dev]++
				seen++
			}
			o.Ack(m.Seq)
		}
	}
	wg.Wait()
	if err := o.housekeepSerial(); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Unacked.Messages != 0 || st.AckedThrough != st.NextSeq-1 || st.Segments > 2 {
		t.Fatalf("after draining: %+v; want nothing unacked and at most the two active segments", st)
	}
}
