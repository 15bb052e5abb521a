package rules

import (
	"math"
	"math/bits"
	"time"
)

// Stats is a snapshot of the engine's counters.
type Stats struct {
	Rules         []RuleStats
	ActionsDone   uint64 // actions carried out
	ActionErrors  uint64 // actions the Writer, Emitter or Commander refused
	ActionDropped uint64 // actions dropped because a queue was full
	Queued        int    // actions waiting now
	Virtual       int    // virtual values set
}

// RuleStats are one rule's counters.
type RuleStats struct {
	Name          string
	Enabled       bool
	Series        int    // series tracked
	Evaluations   uint64 // conditions evaluated
	Fires         uint64
	Suppressed    uint64 // fires held back by cooldown
	Skipped       uint64 // records lacking a field the condition names
	Errors        uint64 // evaluation and template errors
	ActionErrors  uint64
	ActionDropped uint64
	Dropped       uint64 // plugin rules: records dropped while the plugin fell behind
	LastError     string
	P50, P99      time.Duration // evaluation latency (upper bound of the histogram bucket)
}

// Stats returns the engine's counters, rules in declaration order.
func (e *Engine) Stats() Stats {
	s := Stats{ActionsDone: e.done.Load(), ActionErrors: e.failed.Load(), ActionDropped: e.dropped.Load(),
		Queued: len(e.recQ) + len(e.devQ)}
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Virtual = len(e.virtual)
	for _, r := range e.rules {
		s.Rules = append(s.Rules, RuleStats{Name: r.def.Name, Enabled: r.enabled, Series: len(r.keys),
			Evaluations: r.evals, Fires: r.fires, Suppressed: r.suppressed, Skipped: r.skipped, Errors: r.errs,
			ActionErrors: r.actionErrs.Load(), ActionDropped: r.dropped.Load(), LastError: r.lastErr,
			P50: r.hist.quantile(0.50), P99: r.hist.quantile(0.99)})
		if r.plug != nil {
			s.Rules[len(s.Rules)-1].Dropped = r.plug.dropped.Load()
		}
	}
	return s
}

// Rule returns one rule's counters.
func (s Stats) Rule(name string) (RuleStats, bool) {
	for _, r := range s.Rules {
		if r.Name == name {
			return r, true
		}
	}
	return RuleStats{}, false
}

// histogram counts durations in buckets of two per power of two of
// nanoseconds (1 ns to about 17 min): 1.2 KB per rule, quantiles within 50%.
type histogram struct {
	n       uint64
	buckets [2 * 40]uint64
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(d, 1))
	b := bits.Len64(ns) - 1 // 2^b <= ns < 2^(b+1)
	half := 0
	if b > 0 && ns&(1<<(b-1)) != 0 {
		half = 1
	}
	i := 2*b + half
	return min(i, 2*40-1)
}

// upper is the largest duration in bucket i.
func upper(i int) time.Duration {
	if i >= len(histogram{}.buckets)-1 {
		return math.MaxInt64
	}
	b, half := i/2, i%2
	if half == 0 {
		if b == 0 {
			return 1
		}
		return time.Duration(uint64(1)<<b + uint64(1)<<(b-1) - 1)
	}
	return time.Duration(uint64(1)<<(b+1) - 1)
}

func (h *histogram) add(d time.Duration) {
	h.n++
	h.buckets[bucketOf(d)]++
}

func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			return upper(i)
		}
	}
	return upper(len(h.buckets) - 1)
}
