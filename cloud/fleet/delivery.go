package fleet

import (
	"time"

	"github.com/luling-edge/luling/payload"
)

// Through is the highest sequence number up to which every number was
// written or declared lost: one below the oldest open gap, or the last
// number tracked. 0 before tracking started.
func (s *Seq) Through() uint64 {
	if !s.started {
		return 0
	}
	if len(s.gaps) > 0 {
		return s.gaps[0].lo - 1
	}
	return s.next - 1
}

// Gaps returns the open gaps opened at or before cutoff, at most max of
// them, oldest numbers first.
func (s *Seq) Gaps(cutoff time.Time, max int) []payload.SeqRange {
	var out []payload.SeqRange
	for _, g := range s.gaps {
		if len(out) == max {
			break
		}
		if !g.opened.After(cutoff) {
			out = append(out, payload.SeqRange{First: g.lo, Last: g.hi})
		}
	}
	return out
}

// Declare applies a range the gateway declared it will never send: the
// numbers of it in open gaps, and those ahead of the expected number, are
// counted as declared (DeclaredLost, or Skipped when unused) and no longer
// awaited; numbers already seen are left alone. A range ending more than
// MaxJump ahead of the expected number is ignored (it returns false), like
// a message that far ahead. Before tracking started, a declaration starts
// it at the range's first number: a gateway announces its losses before it
// replays what follows them, and keeps announcing a loss only while the
// cloud has not confirmed past it, so what comes after is still to come.
func (s *Seq) Declare(r payload.SeqRange, unused bool, now time.Time) bool {
	if r.First == 0 || r.Last < r.First {
		return true // nothing declared
	}
	if r.Last > MaxSeq {
		return false
	}
	if !s.started {
		if s.win == nil {
			s.win = make([]uint64, Window)
		}
		s.started, s.candOK, s.next = true, false, r.First
		s.gaps = s.gaps[:0]
	}
	maxJump := min(s.MaxJump, MaxJumpLimit)
	if maxJump == 0 {
		maxJump = DefaultMaxJump
	}
	if r.Last >= s.next && r.Last-s.next > maxJump {
		return false
	}
	var n uint64
	// Below next: take the range out of the open gaps.
	keep := s.gaps[:0:0]
	for _, g := range s.gaps {
		lo, hi := max(g.lo, r.First), min(g.hi, r.Last)
		if lo > hi {
			keep = append(keep, g)
			continue
		}
		n += hi - lo + 1
		if g.lo < lo {
			keep = append(keep, gap{lo: g.lo, hi: lo - 1, opened: g.opened})
		}
		if hi < g.hi {
			keep = append(keep, gap{lo: hi + 1, hi: g.hi, opened: g.opened})
		}
	}
	s.stats.GapsOpen -= n
	s.gaps = keep
	// At or above next: a gap opens for what lies before the range, and
	// the expected number moves past it.
	if r.Last >= s.next {
		if r.First > s.next {
			s.gaps = append(s.gaps, gap{lo: s.next, hi: r.First - 1, opened: now})
			s.stats.GapsOpen += r.First - s.next
		}
		first := max(r.First, s.next)
		n += r.Last - first + 1
		// Nothing was written for the new gap nor the range: forget the
		// hashes their slots hold from Window numbers earlier, or the
		// gap's messages would be taken for conflicts when they come.
		from := s.next
		if r.Last-from >= Window {
			from = r.Last - Window + 1
		}
		for k := from; k <= r.Last; k++ {
			s.win[k%Window] = 0
		}
		s.next = r.Last + 1
		s.stats.LastSeq = r.Last
		s.trimGaps()
	}
	if unused {
		s.stats.Skipped += n
	} else {
		s.stats.DeclaredLost += n
	}
	return true
}

// ackState is what the fleet last told a gateway on its ack topic.
type ackState struct {
	sent     uint64    // last Through sent
	dirty    bool      // traffic arrived since the last ack
	at       time.Time // when the last ack went out
	resentAt time.Time // when the last resend request went out
}

// Declare applies a gateway's dropped announcement (see Seq.Declare). It
// returns the number of losses ignored as implausibly far ahead.
func (f *Fleet) Declare(d *payload.Dropped) (ignored int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(d.Site, d.Gateway)
	now := f.now()
	for _, l := range d.Losses {
		if !g.seq.Declare(l.SeqRange, l.Reason == payload.LossUnused, now) {
			ignored++
		}
	}
	g.ack.dirty = true
	return ignored
}

// AckPolicy says when Acks answers a gateway.
type AckPolicy struct {
	// Every is the shortest time between two acks to one gateway.
	Every time.Duration
	// ResendAfter is how long a gap stays open before the gateway is asked
	// to send it again, and how long before that request is repeated.
	ResendAfter time.Duration
	// Repeat, when set, sends an online gateway its last ack again after
	// this long without one, so a lost ack is made good.
	Repeat time.Duration
}

// Acks returns the acknowledgements due: for each gateway with traffic or
// progress since its last ack (at most one per Every), and for each with a
// gap older than ResendAfter (asked again every ResendAfter). Through
// counts every number admitted with Admit as written, and stops below the
// lowest number admitted with AdmitPending and not yet Settled.
func (f *Fleet) Acks(p AckPolicy) []payload.Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	var out []payload.Ack
	for _, g := range f.gws {
		if !g.seq.started || g.seq.candOK {
			// candOK: the last number was out of range (a forged one, or
			// the first of a re-flashed gateway counting from 1 again):
			// until the next one says which, the tracked through may not
			// be the gateway's.
			continue
		}
		through := g.inflight.below(g.seq.Through())
		var resend []payload.SeqRange
		if now.Sub(g.ack.resentAt) >= p.ResendAfter {
			resend = g.seq.Gaps(now.Add(-p.ResendAfter), payload.MaxResendRanges)
		}
		due := (g.ack.dirty || through != g.ack.sent) && now.Sub(g.ack.at) >= p.Every
		due = due || (p.Repeat > 0 && g.view.Online && now.Sub(g.ack.at) >= p.Repeat)
		if !due && len(resend) == 0 {
			continue
		}
		out = append(out, payload.Ack{Site: g.view.Site, Gateway: g.view.Gateway, Through: through, Resend: resend, Sent: now.UTC()})
		g.ack.sent, g.ack.dirty, g.ack.at = through, false, now
		if len(resend) > 0 {
			g.ack.resentAt = now
		}
	}
	return out
}
