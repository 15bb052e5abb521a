package outbox

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// syncGate holds every group's fsync (through Outbox.syncHook) until the
// test resumes it, with the error the fsync is to return.
type syncGate struct {
	started chan payload.SeqRange // a group's fsync is about to run
	resume  chan error
	once    sync.Once
}

func gateSyncs(t *testing.T, o *Outbox) *syncGate {
	g := &syncGate{started: make(chan payload.SeqRange, 16), resume: make(chan error)}
	o.syncHook = func(first, last uint64) error {
		g.started <- payload.SeqRange{First: first, Last: last}
		return <-g.resume
	}
	return g
}

// open lets every fsync through from now on (deferred, so that a failing
// test does not leave the committer waiting at Close).
func (g *syncGate) open() { g.once.Do(func() { close(g.resume) }) }

// next waits for the next group's fsync to start and returns its numbers.
func (g *syncGate) next(t *testing.T) payload.SeqRange {
	t.Helper()
	select {
	case r := <-g.started:
		return r
	case <-time.After(30 * time.Second): // a guard against a hang, not a measurement
		t.Fatal("no group reached its fsync")
		return payload.SeqRange{}
	}
}

// pipelineOptions commit every append at once, so that each Append is one
// group.
func pipelineOptions(t *testing.T) Options {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.CommitInterval = 0
	opts.TelemetryWindow = 0
	return opts
}

func readings(from, n int) []payload.Record {
	recs := make([]payload.Record, n)
	for i := range recs {
		recs[i] = bay("bay-p", from+i)
	}
	return recs
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// fired reports whether an append's result is there, without taking it.
func fired(c <-chan error) bool { return len(c) > 0 }

// startTwoGroups appends group A (readings 0..19) and waits until its
// fsync is held, then appends group B (readings 20..39) and waits until
// B's bytes are in the segment file: written behind A while A's fsync
// has not returned. It returns the results of both, the segment file, and
// its size after A alone.
func startTwoGroups(t *testing.T, o *Outbox, g *syncGate) (a, b <-chan error, seg string, sizeA int64) {
	t.Helper()
	a, err := o.AppendAsync(payload.Telemetry, readings(0, 20))
	if err != nil {
		t.Fatal(err)
	}
	if r := g.next(t); r.First != 1 || r.Last != 1 {
		t.Fatalf("group A holds %d..%d, want 1..1", r.First, r.Last)
	}
	segs := segPath(t, o.opts.Dir, payload.Telemetry)
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	seg = segs[0]
	sizeA = fileSize(t, seg)
	b, err = o.AppendAsync(payload.Telemetry, readings(20, 20))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "group B written while A's fsync is held", func() bool {
		return fileSize(t, seg) > sizeA
	})
	// Nothing of either is published: not to Pending, not to an Append.
	if st := o.Stats(); st.Unacked.Messages != 0 || st.AppendedRecords != 0 || st.NextSeq != 1 {
		t.Fatalf("before A's fsync returned: %d messages pending, %d records appended, next seq %d; want none published",
			st.Unacked.Messages, st.AppendedRecords, st.NextSeq)
	}
	if fired(a) || fired(b) {
		t.Fatal("an append returned before its fsync")
	}
	return a, b, seg, sizeA
}

// checkReadings decodes msgs and checks that they hold readings from..to-1
// in order.
func checkReadings(t *testing.T, msgs []payload.Message, from, to int) {
	t.Helper()
	n := from
	for _, m := range msgs {
		for _, r := range decode(t, m).Records {
			if got := r.Fields["n"].Int(); got != int64(n) {
				t.Fatalf("seq %d holds reading %d where %d comes next", m.Seq, got, n)
			}
			n++
		}
	}
	if n != to {
		t.Fatalf("readings %d..%d stored, want %d..%d", from, n-1, from, to-1)
	}
}

// The next group is sealed and written while the previous group's fsync
// runs, and each is published, in order, only after its own fsync: a
// group written behind one not yet durable is not visible, and neither
// Append returns before its fsync.
func TestPipelinedCommitWritesDuringFsyncPublishesInOrder(t *testing.T) {
	o := mustOpen(t, pipelineOptions(t))
	defer o.Close()
	g := gateSyncs(t, o)
	defer g.open()
	a, b, _, _ := startTwoGroups(t, o, g)

	g.resume <- nil // A's fsync returns
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	if n := o.Stats().Overlapped; n != 1 {
		t.Fatalf("Overlapped %d, want 1", n)
	}
	if r := g.next(t); r.First != 2 || r.Last != 2 {
		t.Fatalf("group B holds %d..%d, want 2..2", r.First, r.Last)
	}
	if st := o.Stats(); st.Unacked.Messages != 1 || st.AppendedRecords != 20 || st.NextSeq != 2 {
		t.Fatalf("with B's fsync held: %d messages pending, %d records appended, next seq %d; want A alone (1, 20, 2)",
			st.Unacked.Messages, st.AppendedRecords, st.NextSeq)
	}
	if fired(b) {
		t.Fatal("B's append returned before its fsync")
	}
	g.resume <- nil
	if err := <-b; err != nil {
		t.Fatal(err)
	}
	msgs := pendingAll(t, o)
	if s := seqsOf(msgs); len(s) != 2 || s[0] != 1 || s[1] != 2 {
		t.Fatalf("pending seqs %v, want [1 2]", s)
	}
	checkReadings(t, msgs, 0, 40)
}

// When the fsync of a group fails, the group written behind it (its bytes
// follow) is taken back with it, its numbers are skipped too, and it is
// committed again: the failed group's appends get the error, the other's
// succeed, nothing of the failed group is ever published or found on disk
// after a restart, and the skipped numbers are declared.
func TestPipelinedFsyncFailureTakesBackTheNextGroup(t *testing.T) {
	opts := pipelineOptions(t)
	o := mustOpen(t, opts)
	g := gateSyncs(t, o)
	defer g.open()
	a, b, seg, _ := startTwoGroups(t, o, g)

	injected := errors.New("injected fsync failure")
	g.resume <- injected // A's fsync fails
	if err := <-a; !errors.Is(err, injected) {
		t.Fatalf("group A's append returned %v, want the fsync's error", err)
	}
	if r := g.next(t); r.First != 3 || r.Last != 3 {
		t.Fatalf("group B committed again as %d..%d, want 3..3 (1 and 2 may be on disk: never reused)", r.First, r.Last)
	}
	if st := o.Stats(); st.Unacked.Messages != 0 || st.AppendedRecords != 0 {
		t.Fatalf("with B's second fsync held: %d messages pending, %d records appended; want none", st.Unacked.Messages, st.AppendedRecords)
	}
	g.resume <- nil
	if err := <-b; err != nil {
		t.Fatalf("group B: %v", err)
	}
	g.open()
	want := []payload.Loss{{SeqRange: payload.SeqRange{First: 1, Last: 2}, Reason: payload.LossUnused}}
	if l := o.Losses(); len(l) != 1 || l[0] != want[0] {
		t.Fatalf("declared losses %+v, want %+v", l, want)
	}
	if st := o.Stats(); st.Skipped != 2 {
		t.Fatalf("Skipped %d, want 2", st.Skipped)
	}
	check := func(o *Outbox, when string) {
		t.Helper()
		msgs := pendingAll(t, o)
		if s := seqsOf(msgs); len(s) != 1 || s[0] != 3 {
			t.Fatalf("%s: pending seqs %v, want [3]", when, s)
		}
		checkReadings(t, msgs, 20, 40)
	}
	check(o, "after the failure")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// A created the segment file: it went with A (and B's first copy);
	// B's second commit made its own.
	want3 := filepath.Join(opts.Dir, segmentName(payload.Telemetry, 3))
	if segs := segPath(t, opts.Dir, payload.Telemetry); len(segs) != 1 || segs[0] != want3 || seg == want3 {
		t.Fatalf("segments %v, want %s alone (%s removed)", segs, want3, seg)
	}
	o = mustOpen(t, opts)
	defer o.Close()
	check(o, "after a restart")
	if st := o.Stats(); st.TruncatedBytes != 0 || st.SkippedBytes != 0 {
		t.Fatalf("recovery cut %d and skipped %d bytes; the failed groups should have been cut off already", st.TruncatedBytes, st.SkippedBytes)
	}
}

// copyDir copies the outbox's files (not its lock) as a power cut would
// leave them if every write so far had reached the disk.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "LOCK" || !e.Type().IsRegular() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A crash between the write and the fsync of group N+1, while group N is
// being published: what a restart finds is every message of N (published,
// so the uplink may have sent it), N+1's torn bytes cut off, and a counter
// that does not go back over N+1's number.
func TestCrashBetweenWriteAndFsyncOfTheNextGroup(t *testing.T) {
	opts := pipelineOptions(t)
	o := mustOpen(t, opts)
	g := gateSyncs(t, o)
	defer o.Close()
	defer g.open()
	a, b, seg, sizeA := startTwoGroups(t, o, g)
	g.resume <- nil // A is durable and published; B is written, its fsync held
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	g.next(t)
	published := pendingAll(t, o)
	if s := seqsOf(published); len(s) != 1 || s[0] != 1 {
		t.Fatalf("published seqs %v, want [1]", s)
	}

	// The power cut: B reached the disk halfway.
	crash := t.TempDir()
	copyDir(t, opts.Dir, crash)
	sizeAB := fileSize(t, seg)
	if err := os.Truncate(filepath.Join(crash, filepath.Base(seg)), sizeA+(sizeAB-sizeA)/2); err != nil {
		t.Fatal(err)
	}
	g.open()
	if err := <-b; err != nil {
		t.Fatal(err)
	}

	lb := &logBuf{}
	c := mustOpen(t, testOptions(crash, lb))
	defer c.Close()
	st := c.Stats()
	if st.TruncatedBytes != (sizeAB-sizeA)/2 {
		t.Fatalf("recovery cut %d bytes, want B's torn %d", st.TruncatedBytes, (sizeAB-sizeA)/2)
	}
	if !strings.Contains(lb.String(), "torn or corrupt tail") {
		t.Fatalf("the torn tail was not logged:\n%s", lb.String())
	}
	found := pendingAll(t, c)
	if s := seqsOf(found); len(s) != 1 || s[0] != 1 || string(found[0].Body) != string(published[0].Body) {
		t.Fatalf("after the crash: seqs %v, want message 1 as it was published", s)
	}
	checkReadings(t, found, 0, 20)
	if st.NextSeq <= 2 {
		t.Fatalf("next seq %d after the crash: number 2 (B's, maybe on disk) would be used again", st.NextSeq)
	}
	declared := false
	for _, l := range c.Losses() {
		declared = declared || (l.First <= 2 && 2 <= l.Last && l.Reason == payload.LossUnused)
	}
	if !declared {
		t.Fatalf("B's number 2 is not declared: losses %+v", c.Losses())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if msgs, _ := c.Pending(ctx, 1, 10); len(msgs) != 0 {
		t.Fatalf("a torn message came back: %v", seqsOf(msgs))
	}
}

// Under concurrent appends of both kinds, with the pipeline busy, every
// message the uplink is handed (Pending) has a higher number than the one
// before, is one a restart finds again byte for byte, and every record of
// an append that returned nil is stored once, each appender's records of
// one kind in the order it appended them.
func TestPipelinedCommitKeepsOrderUnderLoad(t *testing.T) {
	opts := pipelineOptions(t)
	opts.MaxBatchRecords = 7 // many messages, so that groups hold several
	o := mustOpen(t, opts)
	const writers, perWriter = 4, 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[uint64]string{}
	var consumer sync.WaitGroup
	consumer.Add(1)
	go func() { // the uplink: reads what is published as it comes
		defer consumer.Done()
		var after uint64
		for {
			msgs, err := o.Pending(ctx, after, 50)
			if err != nil {
				return
			}
			for _, m := range msgs {
				if m.Seq <= after {
					t.Errorf("Pending handed out seq %d after %d", m.Seq, after)
				}
				after = m.Seq
				mu.Lock()
				seen[m.Seq] = string(m.Body)
				mu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dones []<-chan error
			for i := range perWriter {
				n := w*perWriter + i
				if i%25 == 24 { // an event now and then, some waited on at once
					recs := []payload.Record{door("door-p", n)}
					var err error
					if i%50 == 49 {
						err = o.AppendNow(context.Background(), payload.Event, recs)
					} else {
						err = o.Append(context.Background(), payload.Event, recs)
					}
					if err != nil {
						t.Error(err)
					}
					continue
				}
				done, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("bay-p", n)})
				if err != nil {
					t.Error(err)
					return
				}
				dones = append(dones, done)
			}
			for _, d := range dones {
				if err := <-d; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st := o.Stats()
	t.Logf("%d groups, %d of them written while the previous one synced", st.Groups, st.Overlapped)
	testenv.WaitFor(t, 30*time.Second, "the uplink to have read every message", func() bool {
		last := o.Stats().NextSeq - 1
		mu.Lock()
		defer mu.Unlock()
		_, ok := seen[last]
		return ok
	})
	cancel()
	consumer.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, opts)
	defer o.Close()
	type key struct {
		w    int
		kind payload.Kind
	}
	last := map[key]int{} // a writer's last record number of a kind
	count := 0
	for _, m := range pendingAll(t, o) {
		if body, ok := seen[m.Seq]; ok && body != string(m.Body) {
			t.Fatalf("seq %d after the restart differs from what was published", m.Seq)
		}
		delete(seen, m.Seq)
		for _, r := range decode(t, m).Records {
			n := int(r.Fields["n"].Int())
			k := key{n / perWriter, m.Kind}
			if prev, ok := last[k]; ok && n <= prev {
				t.Fatalf("writer %d: %s record %d stored after %d", k.w, m.Kind, n, prev)
			}
			last[k] = n
			count++
		}
	}
	if len(seen) != 0 {
		t.Fatalf("%d published messages not found after the restart", len(seen))
	}
	if count != writers*perWriter {
		t.Fatalf("%d records stored, want %d", count, writers*perWriter)
	}
}

// Encode refuses a bad record (naming it) and encodes nothing then;
// AppendEncodedAsync appends what it encoded as one append, and an empty
// one at once.
func TestEncodeAndAppendEncoded(t *testing.T) {
	o := mustOpen(t, pipelineOptions(t))
	defer o.Close()
	bad := bay("bay-e", 5)
	bad.Measurement = "9lives"
	if e, err := o.Encode(payload.Telemetry, []payload.Record{bay("bay-e", 4), bad}); err == nil || !strings.Contains(err.Error(), "record 1") || e.Records() != 0 {
		t.Fatalf("Encode of a bad record: %d records, err %v; want none and an error naming record 1", e.Records(), err)
	}
	e, err := o.Encode(payload.Telemetry, readings(0, 5))
	if err != nil {
		t.Fatal(err)
	}
	done, err := o.AppendEncodedAsync(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	msgs := pendingAll(t, o)
	if len(msgs) != 1 || msgs[0].Records != 5 {
		t.Fatalf("%d messages, want one of 5 records", len(msgs))
	}
	checkReadings(t, msgs, 0, 5)
	if done, err := o.AppendEncodedAsync(Encoded{}); err != nil || <-done != nil {
		t.Fatalf("an empty append: %v", err)
	}
}

// EncodeTo appends to what it was given and, when a record is refused,
// leaves it exactly as it was: the records encoded before stay appendable.
func TestEncodeToLeavesTheChunkOnError(t *testing.T) {
	o := mustOpen(t, pipelineOptions(t))
	defer o.Close()
	var e Encoded
	if err := o.EncodeTo(&e, payload.Telemetry, readings(0, 3)); err != nil {
		t.Fatal(err)
	}
	bad := bay("bay-e", 99)
	bad.Measurement = ""
	if err := o.EncodeTo(&e, payload.Telemetry, []payload.Record{bay("bay-p", 3), bad}); err == nil {
		t.Fatal("a record without a measurement was encoded")
	}
	if err := o.EncodeTo(&e, payload.Event, []payload.Record{door("door-e", 1)}); err == nil {
		t.Fatal("an event appended to telemetry")
	}
	if err := o.EncodeTo(&e, payload.Telemetry, readings(3, 2)); err != nil {
		t.Fatal(err)
	}
	if e.Records() != 5 {
		t.Fatalf("%d records, want 5", e.Records())
	}
	done, err := o.AppendEncodedAsync(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkReadings(t, pendingAll(t, o), 0, 5)
}
