// Package pipeline decides which of a device's readings travel upstream.
//
// Every poll of every device yields records; most of them repeat the last
// value (a parking bay stays free for hours). The pipeline stamps each record
// with the time the gateway observed it and applies report-by-exception: a
// record is sent when one of its fields changed (numbers by more than the
// field's deadband), and in any case at least once per max-silence interval,
// so a dashboard always has a recent value and a gateway that goes quiet is
// distinguishable from a bay that does not change. Events always pass.
//
// The state is per series (measurement plus tags) and lives in memory: after
// a restart the first reading of every series is sent again, which the cloud
// and InfluxDB absorb as an identical or newer point.
package pipeline

import (
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Policy is a device's report-by-exception settings.
type Policy struct {
	// Deadband per numeric field: a change of at most this much is not a
	// change. A field without an entry reports any change.
	Deadband map[string]float64
	// MaxSilence is the longest time an unchanged series stays unreported.
	// Zero means report every reading.
	MaxSilence time.Duration
}

// Filter holds the last reported value of every series.
type Filter struct {
	mu     sync.Mutex
	series map[string]*last
	keyBuf []byte
}

type last struct {
	fields map[string]payload.Value // the last reported record's, shared
	sent   time.Time
}

// New returns an empty filter.
func New() *Filter { return &Filter{series: make(map[string]*last)} }

// Stamp sets the observation time of records that have none.
func Stamp(recs []payload.Record, observed time.Time) {
	for i := range recs {
		if recs[i].Time.IsZero() {
			recs[i].Time = observed
		}
	}
}

// Apply filters recs in place by policy and returns the records to report.
// Records must carry their observation time (see Stamp). The filter keeps
// each reported record's Fields map to compare the next readings with:
// the caller must not change a record's fields after Apply. A reading
// that is not reported allocates nothing (TestApplyAllocations).
func (f *Filter) Apply(policy *Policy, recs []payload.Record) []payload.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := recs[:0]
	for _, r := range recs {
		key := f.key(&r)
		prev, ok := f.series[string(key)] // no allocation for the lookup
		if ok && !changed(policy, prev.fields, r.Fields) && !silenceExpired(policy, prev.sent, r.Time) {
			continue
		}
		if !ok {
			prev = &last{}
			f.series[string(key)] = prev
		}
		// The reported record's own map: nothing changes a record's maps
		// once its driver returned it (drivers.Device), and a copy per
		// series was as large as the device's last record.
		prev.fields = r.Fields
		prev.sent = r.Time
		out = append(out, r)
	}
	return out
}

// Forget drops the state of every series whose key starts with the
// measurement and device given (used when a device is removed).
func (f *Filter) Forget(measurement, device string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := measurement + "\x00"
	for k := range f.series {
		if strings.HasPrefix(k, prefix) && strings.Contains(k, "\x00device="+device+"\x00") {
			delete(f.series, k)
		}
	}
}

// Len returns the number of tracked series.
func (f *Filter) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.series)
}

func silenceExpired(p *Policy, sent, now time.Time) bool {
	return p == nil || p.MaxSilence <= 0 || now.Sub(sent) >= p.MaxSilence
}

func changed(p *Policy, prev, cur map[string]payload.Value) bool {
	if len(prev) != len(cur) {
		return true
	}
	for k, v := range cur {
		old, ok := prev[k]
		if !ok || old.Type() != v.Type() {
			return true
		}
		switch v.Type() {
		case payload.TypeFloat, payload.TypeInt:
			band := 0.0
			if p != nil {
				band = p.Deadband[k]
			}
			d := math.Abs(v.Float() - old.Float())
			if band <= 0 {
				if d != 0 {
					return true
				}
			} else if d > band {
				return true
			}
		default:
			if !v.Equal(old) {
				return true
			}
		}
	}
	return false
}

// key builds measurement\x00k=v\x00k=v\x00 with tags sorted, in a buffer
// reused across calls.
func (f *Filter) key(r *payload.Record) []byte {
	b := append(f.keyBuf[:0], r.Measurement...)
	b = append(b, 0)
	if len(r.Tags) > 0 {
		var small [8]string
		keys := small[:0]
		for k := range r.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b = append(b, k...)
			b = append(b, '=')
			b = append(b, r.Tags[k]...)
			b = append(b, 0)
		}
	}
	f.keyBuf = b
	return b
}
