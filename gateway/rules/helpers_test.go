package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// fakeClock is a manual clock: time moves only by Advance.
type fakeClock = clock.Fake

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return clock.NewFake(t0) }

// write is one device write a fakeWriter saw.
type write struct {
	Device, Point string
	Value         payload.Value
}

func (w write) String() string { return fmt.Sprintf("%s.%s=%s", w.Device, w.Point, w.Value.Str()) }

// fakeWriter records writes. When gate is set, each write waits for it.
type fakeWriter struct {
	mu      sync.Mutex
	writes  []write
	notify  chan struct{}
	entered chan struct{}
	gate    chan struct{}
}

func newFakeWriter() *fakeWriter {
	return &fakeWriter{notify: make(chan struct{}, 1<<16), entered: make(chan struct{}, 1<<16)}
}

func (w *fakeWriter) Write(ctx context.Context, device, point string, v payload.Value) error {
	w.entered <- struct{}{}
	if w.gate != nil {
		select {
		case <-w.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	w.writes = append(w.writes, write{device, point, v})
	w.mu.Unlock()
	w.notify <- struct{}{}
	return nil
}

// wait waits until n writes arrived and returns them as strings.
func (w *fakeWriter) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		got := len(w.writes)
		var out []string
		if got >= n {
			for _, x := range w.writes {
				out = append(out, x.String())
			}
		}
		w.mu.Unlock()
		if got >= n {
			return out
		}
		select {
		case <-w.notify:
		case <-deadline:
			t.Fatalf("got %d writes, want %d", got, n)
		}
	}
}

// fakeEmitter records what the engine emits.
type fakeEmitter struct {
	mu     sync.Mutex
	recs   []payload.Record
	kinds  []payload.Kind
	notify chan struct{}
}

func newFakeEmitter() *fakeEmitter { return &fakeEmitter{notify: make(chan struct{}, 1<<16)} }

func (e *fakeEmitter) Emit(_ context.Context, kind payload.Kind, recs []payload.Record) {
	e.mu.Lock()
	for _, r := range recs {
		e.recs = append(e.recs, r)
		e.kinds = append(e.kinds, kind)
	}
	e.mu.Unlock()
	e.notify <- struct{}{}
}

// wait waits until n records of measurement meas arrived and returns them.
func (e *fakeEmitter) wait(t *testing.T, meas string, n int) []payload.Record {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		e.mu.Lock()
		var out []payload.Record
		for _, r := range e.recs {
			if r.Measurement == meas {
				out = append(out, r)
			}
		}
		e.mu.Unlock()
		if len(out) >= n {
			return out
		}
		select {
		case <-e.notify:
		case <-deadline:
			t.Fatalf("got %d %s records, want %d", len(out), meas, n)
		}
	}
}

func messages(recs []payload.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Fields["message"].Str())
	}
	return out
}

// fakeCommander records commands.
type fakeCommander struct {
	mu   sync.Mutex
	cmds []string
	ch   chan struct{}
}

func (c *fakeCommander) Command(_ context.Context, name string, args map[string]string) error {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k+"="+args[k])
	}
	sort.Strings(keys)
	c.mu.Lock()
	c.cmds = append(c.cmds, name+" "+strings.Join(keys, " "))
	c.mu.Unlock()
	c.ch <- struct{}{}
	return nil
}

func mustParse(t testing.TB, src string) []Def {
	t.Helper()
	defs, err := ParseFile("rules.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return defs
}

func mustEngine(t testing.TB, src string, opts Options) *Engine {
	t.Helper()
	e, err := New(mustParse(t, src), opts)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	return e
}

func example(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../firmware-config/examples/rules", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// run starts the engine's workers and stops them when the test ends.
func run(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func bay(dev, zone, num string, occupied bool, at time.Time) payload.Record {
	return payload.Record{Measurement: "parking_bay", Time: at,
		Tags:   map[string]string{"device": dev, "lot": "l1", "zone": zone, "bay": num},
		Fields: map[string]payload.Value{"occupied": payload.Bool(occupied), "distance_cm": payload.Float(120)}}
}

func ruleStats(t *testing.T, e *Engine, name string) RuleStats {
	t.Helper()
	s, ok := e.Stats().Rule(name)
	if !ok {
		t.Fatalf("no stats for rule %s", name)
	}
	return s
}
