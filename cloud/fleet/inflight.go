package fleet

import (
	"slices"
	"time"
)

// Writes in flight. cloudd may keep several InfluxDB writes in flight at
// once (ingest's Config.Writes), and they may complete in any order. The
// sequence check admits a number when its message is put into a write, so
// between admission and the write's completion the number counts as
// written in Seq while it is not yet in InfluxDB. The fleet therefore keeps
// per gateway the numbers admitted for writing and not yet settled
// (written, or refused for good), and neither the acknowledgement to the
// gateway (Acks) nor the state that moves to another instance (SeqState)
// counts them as written.

// inflight is a gateway's numbers admitted for writing and not settled, in
// admission order (a handful: the messages of the writes in flight).
type inflight struct {
	seqs []uint64
	at   []time.Time // when each was admitted
}

func (f *inflight) add(n uint64, at time.Time) {
	f.seqs = append(f.seqs, n)
	f.at = append(f.at, at)
}

// remove forgets one occurrence of n; a number not held is ignored.
// Writes complete in the order they were built, so n is nearly always the
// oldest: that costs nothing, however many numbers are pending.
func (f *inflight) remove(n uint64) {
	i := slices.Index(f.seqs, n)
	switch {
	case i < 0:
		return
	case i == 0:
		f.seqs, f.at = f.seqs[1:], f.at[1:]
	default:
		f.seqs = slices.Delete(f.seqs, i, i+1)
		f.at = slices.Delete(f.at, i, i+1)
	}
	if len(f.seqs) == 0 {
		f.seqs, f.at = nil, nil // a burst must not pin its slices
	}
}

// below caps through below the lowest number in flight.
func (f *inflight) below(through uint64) uint64 {
	for _, n := range f.seqs {
		if n <= through {
			through = n - 1
		}
	}
	return through
}

// gaps merges the numbers in flight into st as open gaps (opened when they
// were admitted): an instance taking the gateway over from this state
// awaits them instead of taking them for written. When that makes more
// than MaxOpenGaps ranges, the closest neighbours are joined: a number
// written in between is then awaited again, and its redelivery is written
// again (the same point, which InfluxDB overwrites), never taken for
// written when it is not.
func (f *inflight) gaps(st SeqState) SeqState {
	if len(f.seqs) == 0 || st.Next == 0 {
		return st
	}
	all := append([]GapState(nil), st.Gaps...)
	for i, n := range f.seqs {
		if n == 0 || n >= st.Next {
			continue // a reset moved tracking below it: nothing to await
		}
		all = append(all, GapState{First: n, Last: n, Opened: f.at[i]})
	}
	slices.SortFunc(all, func(a, b GapState) int {
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
	out := all[:0]
	for _, g := range all {
		if k := len(out) - 1; k >= 0 && g.First <= out[k].Last+1 {
			out[k].Last = max(out[k].Last, g.Last)
			if g.Opened.Before(out[k].Opened) {
				out[k].Opened = g.Opened
			}
			continue
		}
		out = append(out, g)
	}
	for len(out) > MaxOpenGaps {
		best := 0
		for i := 1; i+1 < len(out); i++ {
			if out[i+1].First-out[i].Last < out[best+1].First-out[best].Last {
				best = i
			}
		}
		out[best].Last = out[best+1].Last
		if out[best+1].Opened.Before(out[best].Opened) {
			out[best].Opened = out[best+1].Opened
		}
		out = slices.Delete(out, best+1, best+2)
	}
	st.Gaps = out
	return st
}

// Settled records that the write of a batch admitted for writing completed:
// its points are in InfluxDB, or InfluxDB refused them for good. Until then
// Acks and SeqState do not count its number as written. A write abandoned
// (cloudd stopping) is not settled: give it to Unwritten only.
func (f *Fleet) Settled(site, gw string, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.gws[site+"/"+gw]; g != nil {
		g.inflight.remove(seq)
	}
}

// InFlight returns how many of a gateway's numbers were admitted for
// writing and not settled.
func (f *Fleet) InFlight(site, gw string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.gws[site+"/"+gw]; g != nil {
		return len(g.inflight.seqs)
	}
	return 0
}
