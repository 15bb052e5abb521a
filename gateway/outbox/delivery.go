package outbox

import (
	"time"
)

// DefaultHoldFor is how long a message the broker acknowledged waits for
// the cloud's confirmation when Options.HoldFor is 0.
const DefaultHoldFor = time.Hour

// End-to-end delivery. Ack says a message may go. With a cloud that
// confirms what it wrote, the uplink calls Sent on the broker's PUBACK
// instead, and Confirm when the cloud's acknowledgement arrives: a message
// is then kept until the cloud confirmed it, so one the broker dropped after
// its PUBACK can be sent again (Pending still returns it; the uplink's
// stream moves past it, a new session or a resend request reads it again).
// A message sent and not confirmed within HoldFor is let go as if
// confirmed (logged, Stats.HoldExpired): a cloud that never confirms must
// not fill the outbox.

// Sent records that the broker acknowledged these messages (PUBACK); they
// stay until Confirm (or HoldFor). Unknown numbers are ignored; the only
// error is ErrClosed.
func (o *Outbox) Sent(seqs ...uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	for _, seq := range seqs {
		if s, i := o.find(seq); s != nil {
			s.entries[i].sent = true
		}
	}
	return nil
}

// Confirm records that the cloud wrote (or was told the loss of) every
// message up to through: they are acknowledged, their segments deleted in
// time, and the declared losses up to through forgotten. The only error is
// ErrClosed.
func (o *Outbox) Confirm(through uint64) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	// A number never assigned cannot have been written: an ack beyond the
	// counter is someone else's (or forged), and confirms no more than
	// what exists.
	through = min(through, o.nextSeq-1)
	freed := o.ackThroughLocked(through)
	o.mu.Unlock()
	o.ForgetLosses(through)
	if freed {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// ackThroughLocked acknowledges every stored message up to through and
// reports whether a segment became free.
func (o *Outbox) ackThroughLocked(through uint64) bool {
	freed := false
	for k := range o.logs {
		for _, s := range o.logs[k].segs {
			if s.first > through {
				break
			}
			if s.unacked == 0 {
				continue
			}
			for i := range s.entries {
				e := &s.entries[i]
				if e.seq > through {
					break
				}
				if e.acked {
					continue
				}
				e.acked = true
				s.unacked--
				s.unRecs -= int64(e.recs)
				o.lastAcked = max(o.lastAcked, e.seq)
				o.ackDirty = true
			}
			freed = freed || s.unacked == 0
		}
	}
	return freed
}

// sentThroughLocked is one below the oldest message neither acknowledged
// nor sent, or the highest committed seq.
func (o *Outbox) sentThroughLocked() uint64 {
	w := o.committed
	for k := range o.logs {
	segs:
		for _, s := range o.logs[k].segs {
			if s.unacked == 0 {
				continue
			}
			for _, e := range s.entries {
				if e.seq > w {
					break segs
				}
				if !e.acked && !e.sent {
					w = e.seq - 1
					break segs
				}
			}
		}
	}
	return w
}

// holdPoint says that at time at every message up to through was sent or
// acknowledged.
type holdPoint struct {
	at      time.Time
	through uint64
}

// expireHolds records how far messages are sent and lets go of those sent
// more than HoldFor ago without the cloud's confirmation. The committer
// calls it from housekeeping.
func (o *Outbox) expireHolds() {
	now := o.opts.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if w := o.sentThroughLocked(); len(o.holds) == 0 || w > o.holds[len(o.holds)-1].through {
		o.holds = append(o.holds, holdPoint{at: now, through: w})
	}
	var through uint64
	n := 0
	for n < len(o.holds) && now.Sub(o.holds[n].at) >= o.opts.HoldFor {
		through = o.holds[n].through
		n++
	}
	if n == 0 {
		return
	}
	o.holds = o.holds[n:]
	before := o.statsLocked().Unacked.Messages
	o.ackThroughLocked(through)
	if let := before - o.statsLocked().Unacked.Messages; let > 0 {
		o.st.HoldExpired += let
		if !o.holdWarned {
			o.holdWarned = true
			o.log.Warn("outbox: the cloud has not confirmed messages the broker acknowledged; letting them go after hold_for",
				"through", through, "messages", let, "hold_for", o.opts.HoldFor)
		}
	} else {
		o.holdWarned = false
	}
}
