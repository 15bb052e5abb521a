package fleet

import "time"

// MaxOpenGaps bounds the gap ranges kept per gateway. When a gateway opens
// more, the oldest ranges are counted as lost at once.
const MaxOpenGaps = 256

// resetDistance is how far below the expected sequence number a message
// may be before it is taken as a gateway whose counter was reset (a
// replaced or re-flashed gateway) rather than an old redelivery.
const resetDistance = 1 << 20

// SeqResult is what one sequence number meant.
type SeqResult uint8

const (
	SeqFirst     SeqResult = iota // first message seen: tracking starts here
	SeqInOrder                    // the expected next number
	SeqGap                        // ahead of the expected number: a gap opened
	SeqReordered                  // a late arrival that filled (part of) a gap
	SeqDuplicate                  // already seen (redelivery)
	SeqReset                      // far below: the gateway's counter restarted
)

func (r SeqResult) String() string {
	return [...]string{"first", "in-order", "gap", "reordered", "duplicate", "reset"}[r]
}

type gap struct {
	lo, hi uint64 // inclusive
	opened time.Time
}

// SeqStats are the counters of one gateway's sequence tracking.
type SeqStats struct {
	LastSeq    uint64 `json:"last_seq"`   // highest sequence number seen
	GapsOpen   uint64 `json:"gaps_open"`  // messages missing, still within the grace period
	Lost       uint64 `json:"lost"`       // messages missing for longer than the grace period
	Reordered  uint64 `json:"reordered"`  // late arrivals that filled a gap
	Duplicates uint64 `json:"duplicates"` // messages seen before
	Resets     uint64 `json:"resets"`     // counter restarts
}

// Seq tracks one gateway's sequence numbers: the expected next number and
// the open gaps, each a range of missing numbers with the time it opened.
// Memory is bounded by MaxOpenGaps. The zero value is ready: the first
// number observed starts tracking without reporting a gap.
type Seq struct {
	started bool
	next    uint64
	gaps    []gap // sorted by lo, disjoint
	stats   SeqStats
}

// Observe records sequence number n seen at now.
func (s *Seq) Observe(n uint64, now time.Time) SeqResult {
	switch {
	case !s.started:
		s.started, s.next, s.stats.LastSeq = true, n+1, n
		return SeqFirst
	case n == s.next:
		s.next++
		s.stats.LastSeq = n
		return SeqInOrder
	case n > s.next:
		s.gaps = append(s.gaps, gap{lo: s.next, hi: n - 1, opened: now})
		s.stats.GapsOpen += n - s.next
		if len(s.gaps) > MaxOpenGaps {
			g := s.gaps[0]
			s.stats.GapsOpen -= g.hi - g.lo + 1
			s.stats.Lost += g.hi - g.lo + 1
			s.gaps = append(s.gaps[:0], s.gaps[1:]...)
		}
		s.next = n + 1
		s.stats.LastSeq = n
		return SeqGap
	}
	for i := range s.gaps {
		g := &s.gaps[i]
		if n < g.lo || n > g.hi {
			continue
		}
		s.stats.GapsOpen--
		s.stats.Reordered++
		switch {
		case g.lo == g.hi:
			s.gaps = append(s.gaps[:i], s.gaps[i+1:]...)
		case n == g.lo:
			g.lo++
		case n == g.hi:
			g.hi--
		default:
			right := gap{lo: n + 1, hi: g.hi, opened: g.opened}
			g.hi = n - 1
			s.gaps = append(s.gaps, gap{})
			copy(s.gaps[i+2:], s.gaps[i+1:])
			s.gaps[i+1] = right
			if len(s.gaps) > MaxOpenGaps {
				o := s.gaps[0]
				s.stats.GapsOpen -= o.hi - o.lo + 1
				s.stats.Lost += o.hi - o.lo + 1
				s.gaps = append(s.gaps[:0], s.gaps[1:]...)
			}
		}
		return SeqReordered
	}
	if s.next-n > resetDistance {
		s.stats.Lost += s.stats.GapsOpen
		s.stats.GapsOpen = 0
		s.gaps = s.gaps[:0]
		s.next, s.stats.LastSeq = n+1, n
		s.stats.Resets++
		return SeqReset
	}
	s.stats.Duplicates++
	return SeqDuplicate
}

// Expire counts gaps opened before now-grace as lost and forgets them.
// It returns how many messages it declared lost.
func (s *Seq) Expire(now time.Time, grace time.Duration) uint64 {
	var lost uint64
	keep := s.gaps[:0]
	for _, g := range s.gaps {
		if now.Sub(g.opened) >= grace {
			lost += g.hi - g.lo + 1
			continue
		}
		keep = append(keep, g)
	}
	s.gaps = keep
	s.stats.GapsOpen -= lost
	s.stats.Lost += lost
	return lost
}

// Stats returns the counters.
func (s *Seq) Stats() SeqStats { return s.stats }
