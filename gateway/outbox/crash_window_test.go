package outbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

const crashWindowEnv = "LULING_OUTBOX_CRASH_WINDOW_DIR"

// eventEvery is how many readings the window child queues per event.
const eventEvery = 10

// TestCrashWindowChild is the child process of TestKill9Window. It works
// as gatewayd's committer does with a telemetry window: readings are
// queued without waiting (AppendAsync), and every eventEvery readings an
// event is appended and waited for. The window is an hour, so telemetry
// is committed only by the events. It prints "tq N" when reading N is
// queued, "tok N" when it is durable, and "eok K N" when event K, appended
// after reading N, is durable.
func TestCrashWindowChild(t *testing.T) {
	dir := os.Getenv(crashWindowEnv)
	if dir == "" {
		t.Skip("child process of TestKill9Window")
	}
	var lb logBuf
	opts := testOptions(dir, &lb)
	opts.CommitInterval = 200_000 // 0.2 ms
	opts.TelemetryWindow = time.Hour
	o, err := Open(opts)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		mu.Unlock()
	}
	for n := range 1_000_000 {
		done, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("w", n)})
		if err != nil {
			fmt.Println("append:", err)
			os.Exit(2)
		}
		say("tq %d", n)
		go func() {
			if err := <-done; err == nil {
				say("tok %d", n)
			}
		}()
		if n%eventEvery == eventEvery-1 {
			k := n / eventEvery
			if err := o.Append(context.Background(), payload.Event, []payload.Record{door("w", k)}); err != nil {
				fmt.Println("append:", err)
				os.Exit(2)
			}
			say("eok %d %d", k, n)
		}
	}
}

// TestKill9Window kills the window child in the middle of a window, five
// readings after its 50th event: every
// event it was told is durable survives, and with it every reading queued
// before it; the readings lost are the ones queued after the last commit
// (at most one window's worth), and what survives has no gap.
func TestKill9Window(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWindowChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashWindowEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lastEvent, readingsBefore, queued, durable := -1, -1, -1, -1
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		num := func(i int) int { v, _ := strconv.Atoi(f[i]); return v }
		switch {
		case len(f) == 2 && f[0] == "tq":
			queued = num(1)
			// Mid-window: five readings after the 50th event.
			if queued == 50*eventEvery+4 && !killed {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		case len(f) == 2 && f[0] == "tok":
			durable = max(durable, num(1))
		case len(f) == 3 && f[0] == "eok":
			lastEvent, readingsBefore = num(1), num(2)
		default:
			t.Logf("child: %s", sc.Text())
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatal("child ended before it was killed")
	}

	var lb logBuf
	o := mustOpen(t, testOptions(dir, &lb))
	defer o.Close()
	var events, readings []int
	for _, m := range pendingAll(t, o) {
		for _, r := range decode(t, m).Records {
			n := int(r.Fields["n"].Int())
			if m.Kind == payload.Event {
				events = append(events, n)
			} else {
				readings = append(readings, n)
			}
		}
	}
	contiguous := func(what string, got []int) int {
		for i, n := range got {
			if n != i {
				t.Fatalf("%s: found %d at position %d (lost, duplicated or out of order)", what, n, i)
			}
		}
		return len(got) - 1
	}
	lastE, lastR := contiguous("events", events), contiguous("readings", readings)
	t.Logf("killed after event %d (reading %d queued before it); %d readings queued, %d reported durable; recovered events 0..%d, readings 0..%d: %d readings lost",
		lastEvent, readingsBefore, queued+1, durable+1, lastE, lastR, queued-lastR)
	if lastE < lastEvent {
		t.Errorf("event %d was reported durable but the outbox holds events up to %d", lastEvent, lastE)
	}
	if lastR < max(readingsBefore, durable) {
		t.Errorf("readings up to %d were durable (by event %d or reported), the outbox holds up to %d", max(readingsBefore, durable), lastEvent, lastR)
	}
	// Only what was queued after the last commit can be lost: at most the
	// readings between two events here (the window's content).
	if lost := queued - lastR; lost > eventEvery {
		t.Errorf("%d readings lost, more than one window (%d readings between commits)", lost, eventEvery)
	}
}
