package outbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/luling-edge/luling/payload"
)

// smallDisk mounts a tmpfs of size bytes and returns its path; the test is
// skipped where mounting is not allowed (not root).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the disk is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if f == nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// checkAccounted fails unless every number below NextSeq is stored or
// declared lost.
func checkAccounted(t *testing.T, o *Outbox) {
	t.Helper()
	have := map[uint64]bool{}
	for _, m := range pendingAll(t, o) {
		have[m.Seq] = true
	}
	for _, l := range o.Losses() {
		for s := l.First; s <= l.Last; s++ {
			have[s] = true
		}
	}
	next := o.Stats().NextSeq
	for s := uint64(1); s < next; s++ {
		if !have[s] {
			t.Fatalf("seq %d is neither stored nor declared lost (next %d)", s, next)
		}
	}
}

// A disk that fills up (the uplink down) and empties again: the outbox
// keeps taking readings by dropping its oldest telemetry, every number is
// stored or declared, errors are not logged per append, and it reopens on
// a full disk and frees acknowledged space there.
func TestDiskFullKeepsRunningAndDeclaresLosses(t *testing.T) {
	dir := smallDisk(t, "1m")
	var lb logBuf
	opts := testOptions(filepath.Join(dir, "outbox"), &lb)
	o := mustOpen(t, opts)
	t.Cleanup(func() { o.Close() }) // before the unmount
	const appends = 6000            // about 2 MB of readings for a 1 MB disk
	failed := 0
	for i := range appends {
		err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-1", i)})
		if err != nil {
			if !isNoSpace(err) && !errors.Is(err, ErrFull) {
				t.Fatalf("append %d: %v", i, err)
			}
			failed++
		}
	}
	st := o.Stats()
	if st.DroppedOldest.Records == 0 {
		t.Fatalf("nothing dropped on a full disk: %+v", st)
	}
	if failed > appends/20 {
		t.Fatalf("%d of %d appends failed: the outbox did not make room", failed, appends)
	}
	if got := st.Unacked.Records + st.DroppedOldest.Records; got != int64(appends-failed) {
		t.Fatalf("stored %d + dropped %d = %d, want the %d accepted", st.Unacked.Records, st.DroppedOldest.Records, got, appends-failed)
	}
	checkAccounted(t, o)
	if n := strings.Count(lb.String(), "commit failed"); n > 5 {
		t.Fatalf("%d log lines about failed commits: want them rate-limited", n)
	}
	if err := o.Close(); err != nil && !isNoSpace(err) {
		t.Fatal(err)
	}

	// Another file takes the rest of the disk; the outbox still opens.
	fill(t, filepath.Join(dir, "filler"))
	o = mustOpen(t, opts)
	t.Cleanup(func() { o.Close() })
	if !strings.Contains(lb.String(), "disk full") {
		t.Errorf("opening on a full disk did not say so:\n%s", lb.String())
	}
	checkAccounted(t, o)
	// The uplink comes back: everything is acknowledged, and the space is
	// freed although the disk is full.
	var seqs []uint64
	for _, m := range pendingAll(t, o) {
		seqs = append(seqs, m.Seq)
	}
	o.Ack(seqs...)
	if err := o.housekeepSerial(); err != nil {
		t.Fatalf("housekeeping on a full disk: %v", err)
	}
	if st := o.Stats(); st.Unacked.Messages != 0 || st.Segments > 1 {
		t.Fatalf("after acknowledging everything on a full disk: %+v", st)
	}
	os.Remove(filepath.Join(dir, "filler"))
	next := o.Stats().NextSeq
	appendOne(t, o, payload.Telemetry, bay("bay-1", 99999))
	if msgs := pendingAll(t, o); len(msgs) != 1 || msgs[0].Seq < next {
		t.Fatalf("after the disk emptied: %v, want one new message numbered from %d", seqsOf(msgs), next)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// A commit that meets a full disk is tried once more with the disk as the
// bound: the oldest telemetry is dropped and declared, and the group's own
// records, an event among them, are stored, not refused (the soak lost an
// event and readings this way, declared only as unused numbers).
func TestDiskFullCommitDropsOldestNotTheGroup(t *testing.T) {
	dir := smallDisk(t, "1m")
	var lb logBuf
	o := mustOpen(t, testOptions(filepath.Join(dir, "outbox"), &lb))
	t.Cleanup(func() { o.Close() }) // before the unmount
	for i := range 200 {
		appendOne(t, o, payload.Telemetry, bay("bay-1", i))
	}
	fill(t, filepath.Join(dir, "filler"))
	next := o.Stats().NextSeq
	if err := o.Append(context.Background(), payload.Event, []payload.Record{door("door-1", 1)}); err != nil {
		t.Fatalf("event on a full disk holding telemetry: %v", err)
	}
	if err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-1", 1000)}); err != nil {
		t.Fatalf("telemetry on a full disk holding telemetry: %v", err)
	}
	st := o.Stats()
	if !strings.Contains(lb.String(), "commit failed") {
		t.Fatalf("no commit met the full disk, the test proves nothing:\n%s", lb.String())
	}
	if st.DroppedOldest.Records == 0 {
		t.Fatalf("nothing dropped to make room: %+v", st)
	}
	var event, reading bool
	for _, m := range pendingAll(t, o) {
		if m.Seq < next {
			continue
		}
		for _, r := range decode(t, m).Records {
			event = event || r.Tags["door"] == "door-1"
			reading = reading || (r.Tags["device"] == "bay-1" && m.Kind == payload.Telemetry)
		}
	}
	if !event || !reading {
		t.Fatalf("stored after the disk filled: event %v, reading %v; want both", event, reading)
	}
	checkAccounted(t, o)
}
