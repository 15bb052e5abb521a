package access_test

import (
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/payload"
)

// recorder collects emitted records.
type recorder struct {
	mu   sync.Mutex
	recs []payload.Record
	ch   chan payload.Record
}

func newRecorder() *recorder { return &recorder{ch: make(chan payload.Record, 64)} }

func (r *recorder) emit(rec payload.Record) {
	if err := payload.CheckSchema(&rec); err != nil {
		panic(err)
	}
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	r.ch <- rec
}

func (r *recorder) next(t *testing.T) payload.Record {
	t.Helper()
	select {
	case rec := <-r.ch:
		return rec
	case <-time.After(20 * time.Second):
		t.Fatal("no record emitted")
	}
	return payload.Record{}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case rec := <-r.ch:
		t.Fatalf("unexpected record %+v", rec)
	default:
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func openStore(t testing.TB, dir string) *access.Store {
	t.Helper()
	s, err := access.OpenStore(dir, access.StoreOptions{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSync(t testing.TB, s *access.Store, version int64, creds ...access.Credential) {
	t.Helper()
	if _, err := s.Sync(version, creds); err != nil {
		t.Fatal(err)
	}
}
