package fleet

import (
	"math"
	"time"
)

const (
	// MaxOpenGaps bounds the gap ranges kept per gateway. When a gateway
	// opens more, the oldest ranges are counted as lost at once.
	MaxOpenGaps = 256

	// Window is how many of the most recent sequence numbers keep the hash
	// of what was written for them (8 bytes each): a number seen again
	// within the window is an identical redelivery or a conflict.
	Window = 512

	// MaxSeq is the highest sequence number tracked. A gateway numbering
	// a million messages a second reaches it after 290,000 years; above it
	// a number can only be forged, and n+1 could wrap.
	MaxSeq = 1<<63 - 1

	// DefaultMaxJump is how far ahead of the expected number a message may
	// be before it is rejected (Seq.MaxJump).
	DefaultMaxJump = 1 << 20

	// MaxJumpLimit bounds Seq.MaxJump: with gaps of at most 2^40 numbers,
	// GapsOpen (at most MaxOpenGaps+1 gaps) cannot overflow.
	MaxJumpLimit = 1 << 40

	// resetDistance is how far below the expected sequence number a message
	// may be before it is taken as a gateway whose counter was reset (a
	// replaced or re-flashed gateway) rather than an old redelivery.
	resetDistance = 1 << 20

	// confirmSpan is how far past an out-of-range number the next one may
	// be to confirm it as a new sequence.
	confirmSpan = MaxOpenGaps
)

// SeqResult is what one sequence number meant, and whether the message's
// points are to be written (Write).
type SeqResult uint8

const (
	SeqFirst     SeqResult = iota // first message seen: tracking starts here
	SeqInOrder                    // the expected next number
	SeqGap                        // ahead of the expected number: a gap opened
	SeqReordered                  // a late arrival that filled (part of) an open gap
	SeqDuplicate                  // seen before with the same content (redelivery): not written again
	SeqReset                      // second consecutive number far from the expected one: tracking restarts there
	SeqLate                       // behind the expected number, never written: its gap was declared lost, or it predates tracking
	SeqStale                      // older than the window and in no open gap: taken as written before, not written again
	SeqConflict                   // seen before with different content: not written
	SeqJump                       // implausibly far ahead (or above MaxSeq): rejected
	SeqFarBelow                   // far below the expected number, not (yet) confirmed as a reset: written, tracking unchanged
)

func (r SeqResult) String() string {
	return [...]string{"first", "in-order", "gap", "reordered", "duplicate", "reset", "late", "stale", "conflict", "jump", "far-below"}[r]
}

// Write reports whether a message with this result is to be written.
func (r SeqResult) Write() bool {
	switch r {
	case SeqDuplicate, SeqStale, SeqConflict, SeqJump:
		return false
	}
	return true
}

type gap struct {
	lo, hi uint64 // inclusive
	opened time.Time
}

// SeqStats are the counters of one gateway's sequence tracking. Every
// field but LastSeq and GapsOpen only ever grows.
type SeqStats struct {
	LastSeq    uint64 `json:"last_seq"`   // highest sequence number tracked (lower after a reset)
	GapsOpen   uint64 `json:"gaps_open"`  // messages missing, still within the grace period
	Lost       uint64 `json:"lost"`       // messages missing for longer than the grace period
	Reordered  uint64 `json:"reordered"`  // late arrivals that filled an open gap
	Late       uint64 `json:"late"`       // arrivals behind the expected number that were never written (after their gap was declared lost)
	Duplicates uint64 `json:"duplicates"` // messages seen before with the same content, or older than the window
	Conflicts  uint64 `json:"conflicts"`  // numbers seen again with different content
	FarBelow   uint64 `json:"far_below"`  // numbers far below the expected one (a reset starts at the second consecutive one)
	Resets     uint64 `json:"resets"`     // tracking restarts
	// DeclaredLost counts missing messages the gateway declared dropped
	// (outbox full, corrupt, missing from its disk); Skipped counts
	// numbers it declared unused (no message carried them). Neither is
	// in Lost: a declared loss is not a silent one.
	DeclaredLost uint64 `json:"declared_lost"`
	Skipped      uint64 `json:"skipped"`
}

// Seq tracks one gateway's sequence numbers: the expected next number, the
// open gaps (each a range of missing numbers with the time it opened), and
// for the last Window numbers the hash of the content written for each.
// Memory is bounded: at most MaxOpenGaps gaps and Window hashes. The zero
// value is ready: the first number observed starts tracking without
// reporting a gap.
//
// A rejected number (SeqJump) is counted by the caller, as a rejection.
//
// A number is in range when it is at most MaxJump ahead of the expected
// one and at most 2^20 below it. A number out of range never moves
// tracking by itself: ahead it is rejected (SeqJump), below it is written
// (SeqFarBelow). Only a second out-of-range number just after the first
// (within 256) restarts tracking (SeqReset): a re-flashed gateway counting
// from 1 again, or a gateway back after its outbox dropped more than
// MaxJump messages. A forged number therefore cannot poison tracking, and
// a forged pair costs the real gateway at most one message, after which
// its own numbers restart tracking in turn.
type Seq struct {
	// MaxJump bounds how far ahead of the expected number a message may
	// be; 0 means DefaultMaxJump, more than MaxJumpLimit means
	// MaxJumpLimit.
	MaxJump uint64

	started bool
	next    uint64
	gaps    []gap // sorted by lo, disjoint
	// win[n%Window] is the content hash written for n, for n in
	// [next-Window, next); 0 means nothing was written for n.
	win  []uint64
	cand uint64 // last out-of-range number; valid while candOK
	// candOK is set by an out-of-range number and cleared by any number in
	// range.
	candOK bool
	stats  SeqStats
}

// Observe classifies sequence number n, whose content hashes to h, seen at
// now, and records it as written when the result says to write it (undo
// that with Unwritten if the write fails).
func (s *Seq) Observe(n, h uint64, now time.Time) SeqResult {
	if h == 0 || h == writtenUnknown {
		h = 1 // 0 marks "not written", writtenUnknown a restored number
	}
	if n > MaxSeq {
		return SeqJump
	}
	if !s.started {
		s.start(n, h)
		return SeqFirst
	}
	maxJump := min(s.MaxJump, MaxJumpLimit)
	if maxJump == 0 {
		maxJump = DefaultMaxJump
	}
	switch {
	case n >= s.next && n-s.next > maxJump:
		return s.outOfRange(n, h, SeqJump)
	case n < s.next && s.next-n > resetDistance:
		return s.outOfRange(n, h, SeqFarBelow)
	}
	s.candOK = false
	if n >= s.next {
		res := SeqInOrder
		if n > s.next {
			res = SeqGap
			s.gaps = append(s.gaps, gap{lo: s.next, hi: n - 1, opened: now})
			s.stats.GapsOpen += n - s.next
			s.trimGaps()
		}
		s.advance(n, h)
		return res
	}
	inWindow := s.next-n <= Window
	if inWindow {
		switch w := s.win[n%Window]; {
		case w == h, w == writtenUnknown:
			s.stats.Duplicates++
			return SeqDuplicate
		case w != 0:
			s.stats.Conflicts++
			return SeqConflict
		}
	}
	if s.fill(n) {
		s.stats.Reordered++
		s.mark(n, h)
		return SeqReordered
	}
	if inWindow {
		s.stats.Late++
		s.mark(n, h)
		return SeqLate
	}
	s.stats.Duplicates++
	return SeqStale
}

// Unwritten undoes the record of n as written with content hash h: its
// write failed, and a redelivery must be written.
func (s *Seq) Unwritten(n, h uint64) {
	if h == 0 || h == writtenUnknown {
		h = 1
	}
	if s.started && n < s.next && s.next-n <= Window && s.win[n%Window] == h {
		s.win[n%Window] = 0
	}
}

// start (re)starts tracking at n.
func (s *Seq) start(n, h uint64) {
	if s.win == nil {
		s.win = make([]uint64, Window)
	} else {
		clear(s.win)
	}
	s.started, s.candOK = true, false
	s.gaps = s.gaps[:0]
	s.next = n
	s.advance(n, h)
}

// outOfRange handles a number too far from the expected one: the second
// one just after another restarts tracking.
func (s *Seq) outOfRange(n, h uint64, res SeqResult) SeqResult {
	if s.candOK && n > s.cand && n-s.cand <= confirmSpan {
		s.addLost(s.stats.GapsOpen)
		s.stats.GapsOpen = 0
		s.stats.Resets++
		s.start(n, h)
		return SeqReset
	}
	s.cand, s.candOK = n, true
	if res == SeqFarBelow {
		s.stats.FarBelow++
	}
	return res
}

// advance moves the expected number past n (n >= next), forgetting the
// hashes of numbers now skipped, and records h for n.
func (s *Seq) advance(n, h uint64) {
	from := s.next
	if n-from > Window {
		from = n - Window
	}
	for k := from; k < n; k++ {
		s.win[k%Window] = 0
	}
	s.win[n%Window] = h
	s.next = n + 1
	s.stats.LastSeq = n
}

func (s *Seq) mark(n, h uint64) {
	if s.next-n <= Window {
		s.win[n%Window] = h
	}
}

// fill removes n from the open gaps and reports whether it was in one.
func (s *Seq) fill(n uint64) bool {
	for i := range s.gaps {
		g := &s.gaps[i]
		if n < g.lo || n > g.hi {
			continue
		}
		s.stats.GapsOpen--
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
			s.trimGaps()
		}
		return true
	}
	return false
}

// trimGaps counts the oldest gap as lost while there are too many.
func (s *Seq) trimGaps() {
	for len(s.gaps) > MaxOpenGaps {
		g := s.gaps[0]
		s.stats.GapsOpen -= g.hi - g.lo + 1
		s.addLost(g.hi - g.lo + 1)
		s.gaps = append(s.gaps[:0], s.gaps[1:]...)
	}
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
	s.addLost(lost)
	return lost
}

// addLost adds to Lost, saturating: the counter never wraps to a lower
// value, however many numbers go missing.
func (s *Seq) addLost(n uint64) {
	if s.stats.Lost+n < s.stats.Lost {
		s.stats.Lost = math.MaxUint64
		return
	}
	s.stats.Lost += n
}

// Stats returns the counters.
func (s *Seq) Stats() SeqStats { return s.stats }
