package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

var t0 = time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

// fakeClock is a manual clock: After fires once Advance passed its time.
type fakeClock = clock.Fake

func newClock() *fakeClock { return clock.NewFake(t0) }

// write is one call to a fakeWriter.
type write struct {
	device, point string
	value         payload.Value
}

// fakeWriters are writable devices that record what they were told.
type fakeWriters struct {
	mu     sync.Mutex
	writes []write
	fail   map[string]error // point → error
	wrote  chan write
}

func newWriters() *fakeWriters {
	return &fakeWriters{fail: map[string]error{}, wrote: make(chan write, 64)}
}

type devWriter struct {
	f  *fakeWriters
	id string
}

func (d devWriter) Write(_ context.Context, point string, v payload.Value) error {
	d.f.mu.Lock()
	err := d.f.fail[point]
	if err == nil {
		d.f.writes = append(d.f.writes, write{d.id, point, v})
	}
	d.f.mu.Unlock()
	if err == nil {
		d.f.wrote <- write{d.id, point, v}
	}
	return err
}

func (f *fakeWriters) lookup(id string) (drivers.Writer, bool) {
	if id != "bay-1" && id != "gate-1" {
		return nil, false
	}
	return devWriter{f, id}, true
}

func (f *fakeWriters) all() []write {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]write(nil), f.writes...)
}

// fakeRules records Enable calls.
type fakeRules struct {
	mu sync.Mutex
	on map[string]bool
}

func (r *fakeRules) Enable(name string, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.on[name]; !ok {
		return errors.New("no such rule")
	}
	r.on[name] = on
	return nil
}

type sent struct {
	id   string
	body []byte
}

// rig is an executor with fakes around it, running until the test ends.
type rig struct {
	t       testing.TB
	dir     string
	clock   *fakeClock
	writers *fakeWriters
	rules   *fakeRules
	exec    *command.Executor
	replies chan sent
	mu      sync.Mutex
	events  []payload.Record
	reload  func(context.Context) error
	stop    func()
}

func newRig(t testing.TB, dir string, tweak func(*command.Options)) *rig {
	t.Helper()
	r := &rig{t: t, dir: dir, clock: newClock(), writers: newWriters(), rules: &fakeRules{on: map[string]bool{"night-lights": true}}, replies: make(chan sent, 64)}
	opts := command.Options{
		StateDir: dir,
		Devices:  r.writers.lookup,
		Reload:   func(ctx context.Context) error { return r.reload(ctx) },
		Rules:    r.rules,
		Emit: func(rec payload.Record) {
			r.mu.Lock()
			r.events = append(r.events, rec)
			r.mu.Unlock()
		},
		Reply: func(_ context.Context, id string, body []byte) error {
			r.replies <- sent{id, append([]byte(nil), body...)}
			return nil
		},
		Clock: r.clock,
	}
	r.reload = func(context.Context) error { return nil }
	if tweak != nil {
		tweak(&opts)
	}
	e, err := command.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.exec = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err := e.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func topic(id string) string { return "gw/v1/lot-a/gw-1/cmd/" + id }

func body(id, name string, args map[string]any, life time.Duration) []byte {
	c := payload.Command{ID: id, Name: name, Args: args, Issued: t0, Expires: t0.Add(life)}
	b, err := c.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// send hands a command to the executor and returns its reply.
func (r *rig) send(id, name string, args map[string]any) *payload.Reply {
	r.t.Helper()
	r.exec.Handle(topic(id), body(id, name, args, time.Minute))
	return r.reply(id)
}

func (r *rig) reply(id string) *payload.Reply {
	r.t.Helper()
	select {
	case s := <-r.replies:
		if s.id != id {
			r.t.Fatalf("reply for %q, want %q: %s", s.id, id, s.body)
		}
		rep, err := payload.DecodeReply(s.body)
		if err != nil {
			r.t.Fatalf("reply %s: %v", s.body, err)
		}
		return rep
	case <-time.After(20 * time.Second):
		r.t.Fatalf("no reply for %s", id)
	}
	return nil
}

func (r *rig) eventList() []payload.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]payload.Record(nil), r.events...)
}

func resultJSON(r *payload.Reply) string {
	b, _ := json.Marshal(r.Result)
	return string(b)
}

func keys(m map[string]any) string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return fmt.Sprint(k)
}
