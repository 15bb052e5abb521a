package outbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/luling-edge/luling/payload"
)

const (
	crashDirEnv = "LULING_OUTBOX_CRASH_DIR"
	crashRunEnv = "LULING_OUTBOX_CRASH_RUN"
	appenders   = 4 // the last one appends events
)

// TestCrashChild is the child process of TestKill9: it appends until it is
// killed and prints "ok <appender> <n>" after each Append returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestKill9")
	}
	run, _ := strconv.Atoi(os.Getenv(crashRunEnv))
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.CommitInterval = 200_000 // 0.2 ms
	o, err := Open(opts)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("r%d-g%d", run, g)
			for n := range 100000 {
				var err error
				if g == appenders-1 {
					err = o.Append(context.Background(), payload.Event, []payload.Record{door(dev, n)})
				} else {
					err = o.Append(context.Background(), payload.Telemetry, []payload.Record{bay(dev, n), bay(dev, n)})
				}
				if err != nil {
					fmt.Println("append:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ok %d %d\n", g, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	o.Close()
}

// runAndKill starts the child, waits until it reported `after` committed
// appends, SIGKILLs it, and returns the highest n committed per appender.
func runAndKill(t *testing.T, dir string, run, after int) [appenders]int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last [appenders]int
	for i := range last {
		last[i] = -1
	}
	sc := bufio.NewScanner(out)
	seen, killed := 0, false
	var other []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "ok" {
			other = append(other, sc.Text())
			continue
		}
		g, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		if n != last[g]+1 {
			t.Fatalf("child appender %d reported %d after %d", g, n, last[g])
		}
		last[g] = n
		seen++
		if seen == after && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before it was killed (%v): %v", err, other)
	}
	t.Logf("run %d: killed after %d reported appends, last per appender %v", run, seen, last)
	return last
}

// checkRun verifies one child run's records in the messages: per appender,
// n is 0, 1, 2, … without gap or duplicate, in seq order, and reaches at
// least what the child reported as committed.
func checkRun(t *testing.T, msgs []payload.Message, run int, reported [appenders]int) {
	t.Helper()
	next := [appenders]int{}
	for _, m := range msgs {
		b := decode(t, m)
		for _, r := range b.Records {
			dev := r.Tags["device"]
			if r.Measurement == "door" {
				dev = r.Tags["door"]
			}
			var rr, g int
			if _, err := fmt.Sscanf(dev, "r%d-g%d", &rr, &g); err != nil {
				t.Fatalf("message %d: unexpected device %q", m.Seq, dev)
			}
			if rr != run {
				continue
			}
			n := int(r.Fields["n"].Int())
			want := next[g]
			if g != appenders-1 {
				// telemetry appends carry each reading twice
				want = next[g] / 2
			}
			if n != want {
				t.Fatalf("run %d appender %d: message %d holds n=%d, want %d (lost, duplicated or out of order)", run, g, m.Seq, n, want)
			}
			next[g]++
		}
	}
	for g := range appenders {
		have := next[g] - 1
		if g != appenders-1 {
			have = next[g]/2 - 1
			if next[g]%2 != 0 {
				t.Fatalf("run %d appender %d: an append was split by the crash (%d records)", run, g, next[g])
			}
		}
		if have < reported[g] {
			t.Fatalf("run %d appender %d: outbox holds up to n=%d, but n=%d was reported committed", run, g, have, reported[g])
		}
	}
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)

	rep0 := runAndKill(t, dir, 0, 400)
	o := mustOpen(t, opts)
	msgs := pendingAll(t, o)
	if got := seqsOf(msgs); !slices.Equal(got, seqRangeList(1, uint64(len(msgs)))) {
		t.Fatalf("after kill -9 seqs are not 1..%d: %v", len(msgs), got)
	}
	checkRun(t, msgs, 0, rep0)
	last := msgs[len(msgs)-1].Seq
	// Acknowledge the first half, as the uplink would, and stop cleanly.
	half := last / 2
	o.Ack(seqRangeList(1, half)...)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	rep1 := runAndKill(t, dir, 1, 300)
	o = mustOpen(t, opts)
	defer o.Close()
	msgs = pendingAll(t, o)
	if len(msgs) == 0 || msgs[0].Seq != half+1 {
		t.Fatalf("after the second kill, replay starts at %v, want %d (first unacked)", seqsOf(msgs[:1]), half+1)
	}
	// Each kill leaves the numbers of its run contiguous; the next run
	// resumes above the reservation of the killed one, and the reserved
	// numbers it had not used are declared unused, not lost.
	i := slices.IndexFunc(msgs, func(m payload.Message) bool { return m.Seq > last })
	if i < 0 {
		t.Fatalf("no message of run 1 after seq %d", last)
	}
	first1, end1 := msgs[i].Seq, msgs[len(msgs)-1].Seq
	if got := seqsOf(msgs); !slices.Equal(got, append(seqRangeList(half+1, last), seqRangeList(first1, end1)...)) {
		t.Fatalf("seqs after the second kill are not %d..%d, %d..%d: %v", half+1, last, first1, end1, got)
	}
	for _, l := range o.Losses() {
		if l.Reason != payload.LossUnused || (l.First != last+1 && l.First != end1+1) {
			t.Fatalf("loss %v: want only the unused rest of a reservation (after %d or %d)", l, last, end1)
		}
	}
	if first1 > last+1 && (len(o.Losses()) == 0 || o.Losses()[0].SeqRange != (payload.SeqRange{First: last + 1, Last: first1 - 1})) {
		t.Fatalf("numbers %d..%d skipped between the runs are not declared: %v", last+1, first1-1, o.Losses())
	}
	// The second run continued the counter where the first stopped.
	for _, m := range msgs {
		b := decode(t, m)
		isRun1 := strings.HasPrefix(b.Records[0].Tags["device"]+b.Records[0].Tags["door"], "r1-")
		if isRun1 != (m.Seq > last) {
			t.Fatalf("message %d belongs to run %v; run 0 ended at seq %d", m.Seq, isRun1, last)
		}
	}
	checkRun(t, msgs, 1, rep1)
	if st := o.Stats(); st.Dropped() != (Counts{}) {
		t.Fatalf("drops after crashes: %+v", st)
	}
}
