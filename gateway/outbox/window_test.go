package outbox

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func queueLen(o *Outbox) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// Telemetry waits for its window to share one commit; an event ends the
// window at once and takes the waiting telemetry along. (An hour-long
// window makes the test independent of timing: nothing but the event or
// Close can end it.)
func TestTelemetryWindowWaitsForEventOrClose(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.TelemetryWindow = time.Hour
	o := mustOpen(t, opts)
	before := o.Stats()
	done := make(chan error, 10)
	for i := range 10 {
		go func() { done <- o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-w", i)}) }()
	}
	testenv.WaitFor(t, 10*time.Second, "10 telemetry appends queued", func() bool { return queueLen(o) == 10 })
	if err := o.Append(context.Background(), payload.Event, []payload.Record{door("door-1", 1)}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st := o.Stats()
	if g := st.Groups - before.Groups; g != 1 {
		t.Fatalf("%d commits for 10 readings and an event, want 1", g)
	}
	// Telemetry alone waits until Close, which commits it.
	for i := range 5 {
		go func() {
			done <- o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-w", 100+i)})
		}()
	}
	testenv.WaitFor(t, 10*time.Second, "5 telemetry appends queued", func() bool { return queueLen(o) == 5 })
	if g := o.Stats().Groups - st.Groups; g != 0 {
		t.Fatalf("telemetry committed within its window (%d commits)", g)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := <-done; err != nil {
			t.Fatalf("append waiting in the window at Close: %v", err)
		}
	}
	o = mustOpen(t, opts)
	defer o.Close()
	if n := o.Stats().Unacked.Records; n != 16 {
		t.Fatalf("%d records after reopen, want 16", n)
	}
}

// EndTelemetryWindow commits the telemetry waiting in the window at once,
// and later telemetry is not held either: a stopping owner's last appends
// return without waiting for the window.
func TestEndTelemetryWindow(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.TelemetryWindow = time.Hour
	o := mustOpen(t, opts)
	defer o.Close()
	done := make(chan error, 1)
	go func() { done <- o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-e", 1)}) }()
	testenv.WaitFor(t, 10*time.Second, "a telemetry append queued", func() bool { return queueLen(o) == 1 })
	o.EndTelemetryWindow()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := o.Append(context.Background(), payload.Telemetry, []payload.Record{bay("bay-e", 2)}); err != nil {
		t.Fatal(err)
	}
	if n := o.Stats().Unacked.Records; n != 2 {
		t.Fatalf("%d records durable, want 2", n)
	}
}

// AppendAsync queues without waiting, in call order: appends made one
// after another from one goroutine share one window, and each channel
// reports its commit.
func TestAppendAsyncSharesWindow(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.TelemetryWindow = time.Hour
	o := mustOpen(t, opts)
	defer o.Close()
	before := o.Stats()
	var dones []<-chan error
	for i := range 20 {
		done, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("bay-a", i)})
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	if n := queueLen(o); n != 20 {
		t.Fatalf("%d appends queued, want 20", n)
	}
	if _, err := o.AppendAsync(payload.Telemetry, []payload.Record{{Measurement: "bad measurement"}}); err == nil {
		t.Fatal("a record the cloud would reject was queued")
	}
	if err := o.Append(context.Background(), payload.Event, []payload.Record{door("door-1", 1)}); err != nil {
		t.Fatal(err)
	}
	for i, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	st := o.Stats()
	if g := st.Groups - before.Groups; g != 1 {
		t.Fatalf("%d commits for 20 readings and an event, want 1", g)
	}
	msgs, err := o.Pending(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var bodies strings.Builder
	for _, m := range msgs {
		if m.Kind == payload.Telemetry {
			bodies.Write(m.Body)
		}
	}
	at := -1
	for i := range 20 {
		j := strings.Index(bodies.String(), fmt.Sprintf(`"b-%03d"`, i))
		if j <= at {
			t.Fatalf("reading %d stored out of call order (or missing)", i)
		}
		at = j
	}
}

// CommitTelemetry ends only the current window: what is queued commits at
// once, and the next telemetry waits a window again.
func TestCommitTelemetryEndsOneWindow(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.TelemetryWindow = time.Hour
	o := mustOpen(t, opts)
	defer o.Close()
	first, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("bay-c", 1)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "a telemetry append queued", func() bool { return queueLen(o) == 1 })
	o.CommitTelemetry()
	if err := <-first; err != nil { // the test's timeout catches a window that did not end
		t.Fatal(err)
	}
	second, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("bay-c", 2)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the second append queued", func() bool { return queueLen(o) == 1 })
	select {
	case err := <-second:
		t.Fatalf("the append after CommitTelemetry committed (%v) without waiting a window", err)
	default:
	}
	if n := o.Stats().Unacked.Records; n != 1 {
		t.Fatalf("%d records durable, want 1", n)
	}
}

// CommitTelemetry does not wait out CommitInterval either (an hour here,
// like the window): the group it asks for is already queued.
func TestCommitTelemetrySkipsCommitInterval(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.TelemetryWindow = time.Hour
	opts.CommitInterval = time.Hour
	o := mustOpen(t, opts)
	defer o.Close()
	done, err := o.AppendAsync(payload.Telemetry, []payload.Record{bay("bay-i", 1)})
	if err != nil {
		t.Fatal(err)
	}
	o.CommitTelemetry()
	if err := <-done; err != nil { // the test's timeout catches an interval that did not end
		t.Fatal(err)
	}
	if n := o.Stats().Unacked.Records; n != 1 {
		t.Fatalf("%d records durable, want 1", n)
	}
}
