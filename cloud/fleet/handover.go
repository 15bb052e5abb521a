package fleet

import (
	"encoding/json"
	"fmt"
	"time"
)

// writtenUnknown marks, in a restored window, a number below the expected
// one that was written by the previous owner of the gateway, whose content
// hash is not known here (hashes are seeded per process). A redelivery of
// such a number is a duplicate: it is not written again.
const writtenUnknown = ^uint64(0)

// SeqState is the part of a gateway's sequence check that moves with the
// gateway from one cloudd instance to another (a partition handover on the
// NATS engine): the expected next number and the open gaps. Counters stay
// with the instance that counted them.
type SeqState struct {
	// Next is the expected next sequence number; 0 means tracking had not
	// started.
	Next uint64 `json:"next"`
	// Gaps are the open gaps, oldest numbers first.
	Gaps []GapState `json:"gaps,omitempty"`
}

// GapState is one open gap of a SeqState.
type GapState struct {
	First  uint64    `json:"first"`
	Last   uint64    `json:"last"`
	Opened time.Time `json:"opened"`
}

// Marshal encodes the state as JSON.
func (st SeqState) Marshal() []byte {
	b, _ := json.Marshal(st) // plain numbers and times: cannot fail
	return b
}

// ParseSeqState decodes a state written by Marshal, checking that it is one
// the sequence check can hold.
func ParseSeqState(b []byte) (SeqState, error) {
	var st SeqState
	if err := json.Unmarshal(b, &st); err != nil {
		return SeqState{}, fmt.Errorf("sequence state: %w", err)
	}
	if st.Next > MaxSeq {
		return SeqState{}, fmt.Errorf("sequence state: next %d is above the highest number tracked", st.Next)
	}
	if len(st.Gaps) > MaxOpenGaps {
		return SeqState{}, fmt.Errorf("sequence state: %d gaps, more than the %d kept", len(st.Gaps), MaxOpenGaps)
	}
	prev := uint64(0)
	for i, g := range st.Gaps {
		if g.First == 0 || g.Last < g.First || g.Last >= st.Next || g.First <= prev {
			return SeqState{}, fmt.Errorf("sequence state: gap %d (%d..%d): want ranges in order, disjoint, below next %d", i, g.First, g.Last, st.Next)
		}
		prev = g.Last
	}
	return st, nil
}

// state returns the part of s that moves with the gateway.
func (s *Seq) state() SeqState {
	if !s.started {
		return SeqState{}
	}
	st := SeqState{Next: s.next}
	for _, g := range s.gaps {
		st.Gaps = append(st.Gaps, GapState{First: g.lo, Last: g.hi, Opened: g.opened})
	}
	return st
}

// restore starts tracking from a state: the open gaps are awaited as
// before, and every number of the window below Next that is in no gap
// counts as written (a redelivery of it is a duplicate). The counters
// stay, but for GapsOpen and LastSeq, which follow the state.
func (s *Seq) restore(st SeqState) {
	stats := s.stats
	stats.GapsOpen, stats.LastSeq = 0, 0
	*s = Seq{MaxJump: s.MaxJump, stats: stats}
	if st.Next == 0 {
		return
	}
	s.started, s.next = true, st.Next
	s.win = make([]uint64, Window)
	for _, g := range st.Gaps {
		s.gaps = append(s.gaps, gap{lo: g.First, hi: g.Last, opened: g.Opened})
		s.stats.GapsOpen += g.Last - g.First + 1
	}
	from := uint64(1)
	if st.Next > Window {
		from = st.Next - Window
	}
	for n := from; n < st.Next; n++ {
		if !s.inGap(n) {
			s.win[n%Window] = writtenUnknown
		}
	}
	s.stats.LastSeq = st.Next - 1
}

func (s *Seq) inGap(n uint64) bool {
	for _, g := range s.gaps {
		if n >= g.lo && n <= g.hi {
			return true
		}
	}
	return false
}

// SeqState returns the sequence state of a gateway (zero when the fleet
// has not tracked it). Numbers whose write is still in flight (AdmitPending,
// not Settled) are in it as open gaps: they are not written yet.
func (f *Fleet) SeqState(site, gw string) SeqState {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gws[site+"/"+gw]
	if g == nil {
		return SeqState{}
	}
	return g.inflight.gaps(g.seq.state())
}

// RestoreSeq takes over a gateway's sequence check from st (see
// SeqState), replacing what this fleet tracked for it. Acknowledgements to
// the gateway resume from st: the next ack goes out as soon as one is due.
func (f *Fleet) RestoreSeq(site, gw string, st SeqState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(site, gw)
	g.seq.restore(st)
	g.ack = ackState{dirty: true}
}

// DropSeq forgets a gateway's sequence check and acknowledgement state
// (another instance took the gateway over); its status, counters and
// parking state stay. Without a sequence check no ack goes out to it.
func (f *Fleet) DropSeq(site, gw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.gws[site+"/"+gw]; g != nil {
		g.seq.restore(SeqState{})
		g.ack = ackState{}
	}
}
