package natsbus

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/internal/testenv"
)

// A lease whose renewal was not confirmed within the fence (here: its last
// confirmed renewal made to look old, as a stalled process sees it) is late,
// not lost: its partition stays held, no commit is recorded while it is
// late, and the next confirmed renewal resumes it. It is given up only when
// the lease bucket names another holder.
func TestLateLeaseIsKeptUntilTheBucketSaysOtherwise(t *testing.T) {
	c := natstest.Start(t, 3)
	in := startInstance(t, c, "solo", 1)
	b := in.bus
	testenv.WaitFor(t, 60*time.Second, "the partition to be held", func() bool { return len(b.Owned()) == 1 })
	b.mu.Lock()
	o := b.parts[0]
	b.mu.Unlock()

	o.lmu.Lock()
	o.refreshed = time.Now().Add(-time.Minute)
	o.lmu.Unlock()
	testenv.WaitFor(t, 30*time.Second, "the lease to go late", func() bool { return b.Stats().Late == 1 })
	// The commit of a late partition fails, unless the renewal in flight
	// already confirmed it again.
	if err := b.Commit(context.Background(), []string{"site/gw-1"}); err == nil && o.late.Load() {
		t.Error("a late partition's states were recorded")
	}
	testenv.WaitFor(t, 30*time.Second, "the lease confirmed again", func() bool { return !o.late.Load() })
	if s := b.Stats(); s.Lost != 0 || s.Owned != 1 || s.Acquired != 1 {
		t.Fatalf("stats %+v after a late renewal: want the partition kept (taken once, none lost)", s)
	}
	b.mu.Lock()
	same := b.parts[0] == o
	b.mu.Unlock()
	if !same {
		t.Fatal("the partition was given up and taken again")
	}
	if err := b.Commit(context.Background(), []string{"site/gw-1"}); err != nil {
		t.Fatalf("commit after the lease was confirmed again: %v", err)
	}

	// Another instance holds the key now (as after an expiry and a take):
	// the next renewal is refused and the partition given up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.leases.Put(ctx, leaseKey(0), []byte("other")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the partition given up", func() bool { return b.Stats().Lost == 1 })
	if err := b.Commit(context.Background(), []string{"site/gw-1"}); err == nil {
		t.Error("a partition held by another instance was recorded")
	}
}
