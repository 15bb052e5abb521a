package bus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/clock"
)

func sweepBus(t *testing.T) *Bus {
	t.Helper()
	b, err := New(Config{Name: "rs485-doors", Port: serialport.Config{Name: "mem", Baud: 115200}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Devices that are all due are polled in turn, back to back, each once per
// round.
func TestSweepRoundRobin(t *testing.T) {
	b := sweepBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var order []string
	poll := func(name string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name)
			if len(order) == 12 {
				cancel()
			}
			return nil
		}
	}
	err := b.Sweep(ctx, []Poller{{Name: "a", Poll: poll("a")}, {Name: "b", Poll: poll("b")}, {Name: "c", Poll: poll("c")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "abcabcabcabc" {
		t.Errorf("poll order %q, want abcabcabcabc", got)
	}
}

// A device is polled at most once per Gap, and one whose poll fails waits
// Retry before its next turn; in between the sweep sleeps on the clock
// instead of spinning: nothing is polled until the clock moves.
func TestSweepGapAndRetryBoundPolls(t *testing.T) {
	b := sweepBus(t)
	line := clock.NewFake(time.Unix(1_700_000_000, 0))
	b.lineClock = line
	var ok, failing atomic.Int64
	ps := []Poller{
		{Name: "reader-1", Gap: 10 * time.Millisecond, Retry: time.Second,
			Poll: func(context.Context) error { ok.Add(1); return nil }},
		{Name: "reader-2", Gap: 10 * time.Millisecond, Retry: time.Second,
			Poll: func(context.Context) error { failing.Add(1); return errors.New("reader is offline") }},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Sweep(ctx, ps) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	check := func(step string, wantOK, wantFailing int64) {
		t.Helper()
		line.BlockUntil(1) // the sweep sleeps on the clock
		if g, f := ok.Load(), failing.Load(); g != wantOK || f != wantFailing {
			t.Fatalf("%s: %d polls of the answering reader and %d of the failing one, want %d and %d", step, g, f, wantOK, wantFailing)
		}
	}
	check("at start", 1, 1)
	for i := 2; i <= 10; i++ {
		line.Advance(10 * time.Millisecond)
		check("after a gap", int64(i), 1)
	}
	line.Advance(5 * time.Millisecond) // within the gap: nothing is due
	check("within a gap", 10, 1)
	line.Advance(905 * time.Millisecond) // the failing reader's retry is due, and the other one
	check("after the retry", 11, 2)
}

// Bad pollers are refused with the device named.
func TestSweepRefusesBadPollers(t *testing.T) {
	b := sweepBus(t)
	for _, c := range []struct {
		p    Poller
		want string
	}{
		{Poller{Name: "r1"}, "device r1 has no poll"},
		{Poller{Name: "r2", Poll: func(context.Context) error { return nil }, Gap: -time.Second}, "device r2: gap -1s"},
	} {
		err := b.Sweep(context.Background(), []Poller{c.p})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "rs485-doors") {
			t.Errorf("Sweep(%+v) = %v, want an error naming the bus and %q", c.p.Name, err, c.want)
		}
	}
}
