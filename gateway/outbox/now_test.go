package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// AppendNow commits at once, without waiting for the commit interval or
// the telemetry window, and takes what is queued along in the same commit.
// (Hour-long windows make the test independent of timing: without
// AppendNow nothing would be committed before Close.)
func TestAppendNowSkipsTheWindows(t *testing.T) {
	opts := testOptions(t.TempDir(), &logBuf{})
	opts.CommitInterval = time.Hour
	opts.TelemetryWindow = time.Hour
	o := mustOpen(t, opts)
	defer o.Close()
	before := o.Stats()
	done := make(chan error, 3)
	for i := range 3 {
		go func() { done <- o.Append(context.Background(), payload.Event, []payload.Record{door("door-q", i)}) }()
	}
	testenv.WaitFor(t, 10*time.Second, "3 events queued", func() bool { return queueLen(o) == 3 })
	if err := o.AppendNow(context.Background(), payload.Event, []payload.Record{door("door-now", 9)}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st := o.Stats()
	if g := st.Groups - before.Groups; g != 1 {
		t.Errorf("%d commits for 3 queued events and one AppendNow, want 1", g)
	}
	if n := st.Unacked.Records; n != 4 {
		t.Errorf("%d records durable, want 4", n)
	}
	// Telemetry by AppendNow does not wait for the telemetry window either.
	if err := o.AppendNow(context.Background(), payload.Telemetry, []payload.Record{bay("bay-now", 1)}); err != nil {
		t.Fatal(err)
	}
	if n := o.Stats().Unacked.Records; n != 5 {
		t.Errorf("%d records durable, want 5", n)
	}
}
