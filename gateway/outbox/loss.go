package outbox

import (
	"slices"

	"github.com/luling-edge/luling/payload"
)

// reserveBlock is how many sequence numbers the committer reserves with one
// write of the state file. After an unclean stop up to reserveBlock-1
// reserved numbers may be unused; they are declared (LossUnused).
const reserveBlock = 64

// Losses returns the sequence numbers the outbox gave up for good and has
// not been told to forget yet, ascending: what the uplink announces to the
// cloud as declared losses.
func (o *Outbox) Losses() []payload.Loss {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.losses)
}

// ForgetLosses forgets the losses that end at or below through: the cloud
// confirmed everything up to through, announcements included.
func (o *Outbox) ForgetLosses(through uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.losses) && o.losses[i].Last <= through {
		i++
	}
	if i > 0 {
		o.losses = slices.Delete(o.losses, 0, i)
		o.ackDirty = true
	}
}

// addLossLocked records r as given up for reason, except the parts an
// earlier loss already covers. Adjacent losses of one reason merge. Past
// maxStateLosses the two oldest merge into one (which may then name numbers
// that were delivered; the cloud ignores those).
func (o *Outbox) addLossLocked(r payload.SeqRange, reason payload.LossReason) {
	ls := o.losses
	first := r.First
	i := 0
	for first <= r.Last {
		for i < len(ls) && ls[i].Last < first {
			i++
		}
		last := r.Last
		if i < len(ls) {
			if ls[i].First <= first { // covered up to ls[i].Last
				if ls[i].Last >= r.Last {
					break
				}
				first = ls[i].Last + 1
				continue
			}
			last = min(last, ls[i].First-1)
		}
		ls = slices.Insert(ls, i, payload.Loss{SeqRange: payload.SeqRange{First: first, Last: last}, Reason: reason})
		if last == r.Last {
			break
		}
		first = last + 1
	}
	// Merge adjacent losses of one reason.
	out := ls[:0]
	for _, l := range ls {
		if n := len(out); n > 0 && out[n-1].Reason == l.Reason && out[n-1].Last+1 == l.First {
			out[n-1].Last = l.Last
			continue
		}
		out = append(out, l)
	}
	for len(out) > maxStateLosses {
		out[0].Last = out[1].Last
		out = slices.Delete(out, 1, 2)
	}
	o.losses = out
	o.ackDirty = true
}

// declareUnackedLocked declares the unacknowledged messages of s lost for
// reason, as runs of consecutive sequence numbers.
func (o *Outbox) declareUnackedLocked(s *segment, reason payload.LossReason) {
	var run *payload.SeqRange
	var runs []payload.SeqRange
	for _, e := range s.entries {
		if e.acked {
			run = nil
			continue
		}
		if run != nil && run.Last+1 == e.seq {
			run.Last = e.seq
			continue
		}
		runs = append(runs, payload.SeqRange{First: e.seq, Last: e.seq})
		run = &runs[len(runs)-1]
	}
	for _, r := range runs {
		o.addLossLocked(r, reason)
	}
}

// unaccounted returns the numbers in 1..top that are neither stored (in
// logs), nor acknowledged according to st, nor already declared lost:
// numbers the outbox assigned and lost without knowing it (a damaged,
// truncated or deleted segment), or reserved and never used.
func unaccounted(st *state, logs *[2]kindLog, top uint64) []payload.SeqRange {
	var have []payload.SeqRange
	if st.ackedThrough > 0 {
		have = append(have, payload.SeqRange{First: 1, Last: st.ackedThrough})
	}
	for _, r := range st.ranges {
		have = append(have, payload.SeqRange{First: r.lo, Last: r.hi})
	}
	for _, l := range st.losses {
		have = append(have, l.SeqRange)
	}
	for k := range logs {
		for _, s := range logs[k].segs {
			for _, e := range s.entries {
				if n := len(have); n > 0 && have[n-1].Last+1 == e.seq {
					have[n-1].Last = e.seq
					continue
				}
				have = append(have, payload.SeqRange{First: e.seq, Last: e.seq})
			}
		}
	}
	slices.SortFunc(have, func(a, b payload.SeqRange) int { return cmpU64(a.First, b.First) })
	var gaps []payload.SeqRange
	next := uint64(1) // lowest number not yet known to be accounted for
	for _, h := range have {
		if next > top {
			break
		}
		if h.First > next {
			gaps = append(gaps, payload.SeqRange{First: next, Last: min(h.First-1, top)})
		}
		next = max(next, h.Last+1)
	}
	if next <= top {
		gaps = append(gaps, payload.SeqRange{First: next, Last: top})
	}
	return gaps
}

// declareRecovered declares what recovery found missing: numbers up to the
// last one known committed (st.lastSeq, or the highest stored) are lost
// (LossMissing, counted in Stats.DroppedMissing as at least one record
// each); numbers above it up to the reservation were most likely never
// used before the crash (LossUnused, counted in Stats.Skipped).
func (o *Outbox) declareRecovered(st *state, maxStored uint64) {
	exact := max(st.lastSeq, maxStored)
	for _, g := range unaccounted(st, &o.logs, o.nextSeq-1) {
		if g.First <= exact {
			m := payload.SeqRange{First: g.First, Last: min(g.Last, exact)}
			o.addLossLocked(m, payload.LossMissing)
			o.st.DroppedMissing.Messages += int64(m.Len())
			o.st.DroppedMissing.Records += int64(m.Len())
			o.log.Warn("outbox: sequence numbers assigned before the restart are not on disk; declaring them lost",
				"seq_first", m.First, "seq_last", m.Last, "messages", m.Len())
		}
		if g.Last > exact {
			u := payload.SeqRange{First: max(g.First, exact+1), Last: g.Last}
			o.addLossLocked(u, payload.LossUnused)
			o.st.Skipped += int64(u.Len())
			o.log.Info("outbox: skipping sequence numbers reserved before an unclean stop",
				"seq_first", u.First, "seq_last", u.Last)
		}
	}
}
