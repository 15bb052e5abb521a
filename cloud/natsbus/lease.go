package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leases under starvation.
//
// An instance held to a tenth of a core or less while draining a backlog
// gets its CPU in slices of a few milliseconds per 100 ms period, shared
// by every goroutine that has work: the pulls validating messages, the
// writer, the garbage collector, the metrics. Measured on such an
// instance (TestStarvedInstanceDrainsWithoutMoves at 5% of a core): one
// balancing round took 5 to 9 s (the heartbeat up to 1.3 s, listing the
// members up to 3 s, the renewals up to 5 s), so that a round began only
// every few seconds, and a lease whose last confirmed renewal was sent
// more than the fence (LeaseTTL less one tick) ago was given up, although
// the bucket still held it for this instance: 43 partitions given up in one
// drain, the messages in flight written twice, and numbers counted lost
// whose copies came after the sequence grace.
//
// So the renewals run on their own: one goroutine (renew) sends, every
// tick, the heartbeat and a renewal of each lease that has none in flight,
// on a connection of their own, without waiting for any of them; each
// renewal waits for its answer on a goroutine of its own, up to half the
// TTL. A renewal is conditional on the revision held (the bucket's update
// with the expected last revision), so its success proves that no other
// instance held the key since: the lease was ours throughout.
//
// When no renewal was confirmed within the fence, the partition is late:
// its messages are neither acknowledged nor committed (another instance may
// hold it by now, if the bucket let it expire), and the renewals go on.
// The partition is given up only when the bucket says so: a renewal
// refused because the key has another revision, and the key then holds
// another instance's name or nothing. A renewal confirmed after the fence
// (late, but ours throughout) resumes it. The safety is the old one: an
// instance acknowledges and records a partition's messages only while its
// last confirmed renewal was sent less than the fence ago, and the server
// lets a key expire no earlier than the TTL after that renewal was stored.

// revision returns the lease revision held.
func (o *owned) revision() uint64 {
	o.lmu.Lock()
	defer o.lmu.Unlock()
	return o.rev
}

// storedAt is when the bucket stored e, never later than now (a server
// clock ahead of this one must not push the fence out).
func storedAt(e jetstream.KeyValueEntry) time.Time {
	if now := time.Now(); e.Created().After(now) {
		return now
	}
	return e.Created()
}

// renew keeps the heartbeat and the leases alive until ctx ends; it
// returns once the renewals in flight ended too.
func (b *Bus) renew(ctx context.Context) {
	tick := time.NewTicker(b.tickEvery())
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		b.renewRound(ctx, &wg, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// renewRound sends the heartbeat and one renewal per lease held that has
// none in flight, and marks late the leases past their fence.
func (b *Bus) renewRound(ctx context.Context, wg *sync.WaitGroup, now time.Time) {
	if b.beating.CompareAndSwap(false, true) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer b.beating.Store(false)
			hctx, cancel := context.WithTimeout(ctx, b.renewWait())
			defer cancel()
			if _, err := b.beat.Put(hctx, b.cfg.Instance, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
				b.log.Warn("nats engine: heartbeat failed", "err", err)
			}
		}()
	}
	held := b.heldParts()
	for p, o := range held {
		o.lmu.Lock()
		age := now.Sub(o.refreshed)
		start := !o.renewing
		o.renewing = true
		rev := o.rev
		o.lmu.Unlock()
		if age > b.fence() && o.late.CompareAndSwap(false, true) {
			b.late.Add(1)
			b.log.Warn("nats engine: lease renewal late; holding the partition's acknowledgements until the lease bucket answers",
				"partition", p, "last_renewal_confirmed", age.Round(time.Millisecond), "fence", b.fence())
		}
		if start {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.renewOne(ctx, p, o, rev)
			}()
		}
	}
}

// fence is how long after its last confirmed renewal was sent a lease
// counts as possibly lost: a tick before the server lets it expire.
func (b *Bus) fence() time.Duration { return b.cfg.LeaseTTL - b.tickEvery() }

// renewWait is how long a renewal or heartbeat waits for its answer.
func (b *Bus) renewWait() time.Duration { return max(b.cfg.LeaseTTL/2, time.Second) }

// renewOne renews partition p's lease held at revision rev.
func (b *Bus) renewOne(ctx context.Context, p int, o *owned, rev uint64) {
	defer func() {
		o.lmu.Lock()
		o.renewing = false
		o.lmu.Unlock()
	}()
	rctx, cancel := context.WithTimeout(ctx, b.renewWait())
	defer cancel()
	sent := time.Now()
	nrev, err := b.leases.Update(rctx, leaseKey(p), []byte(b.cfg.Instance), rev)
	switch {
	case err == nil:
		b.confirm(p, o, nrev, sent)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound):
		// Another revision: ours, when an earlier renewal was stored
		// after its wait ended; else the lease is gone.
		e, gerr := b.leases.Get(rctx, leaseKey(p))
		switch {
		case gerr == nil && string(e.Value()) == b.cfg.Instance:
			b.confirm(p, o, e.Revision(), storedAt(e))
		case gerr == nil:
			b.lose(p, o, fmt.Sprintf("lease held by %q", e.Value()))
		case errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted):
			b.lose(p, o, "lease expired in the bucket")
		default:
			b.log.Warn("nats engine: cannot read a lease; renewing again", "partition", p, "err", gerr)
		}
	case ctx.Err() != nil:
	default:
		b.log.Warn("nats engine: cannot renew a lease; renewing again", "partition", p, "err", err, "waited", time.Since(sent).Round(time.Millisecond))
	}
}

// confirm records that p's lease was ours at revision rev, stored no
// earlier than at, and resumes a late partition.
func (b *Bus) confirm(p int, o *owned, rev uint64, at time.Time) {
	o.lmu.Lock()
	if rev >= o.rev {
		o.rev = rev
		if at.After(o.refreshed) {
			o.refreshed = at
		}
	}
	fresh := time.Since(o.refreshed) <= b.fence()
	o.lmu.Unlock()
	if fresh && o.late.CompareAndSwap(true, false) {
		b.log.Info("nats engine: lease confirmed again; the partition was ours throughout", "partition", p)
	}
}

// deleteLease deletes p's lease held as o, at the revision held or, when a
// renewal was stored after its wait ended, at the newer one if the key
// still names this instance.
func (b *Bus) deleteLease(ctx context.Context, p int, o *owned) error {
	err := b.leases.Delete(ctx, leaseKey(p), jetstream.LastRevision(o.revision()))
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, gerr := b.leases.Get(ctx, leaseKey(p))
	if gerr != nil || string(e.Value()) != b.cfg.Instance {
		return err // not ours any more: nothing to delete
	}
	return b.leases.Delete(ctx, leaseKey(p), jetstream.LastRevision(e.Revision()))
}
