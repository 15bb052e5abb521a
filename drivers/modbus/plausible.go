package modbus

import (
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
)

// FaultEvery bounds the implausible-value fault events of one field: at
// most one "active" event per field in that time, carrying how many
// readings were left out since the previous one.
const FaultEvery = 10 * time.Minute

// FaultImplausible is the code (tag "code") of the fault event raised for
// a reading outside its field's min..max.
const FaultImplausible = "implausible"

// maxPendingFaults caps the fault events waiting for TakeEvents.
const maxPendingFaults = 64

// plausibility counts the readings a device's profile declared impossible
// (outside a field's min..max) and turns them into fault events, rate
// limited per field. A sensor that reports 645 V on a 3.6 V battery is
// broken or misread; publishing the number would put it on a dashboard
// and into averages, so the value is left out and the fault is reported.
type plausibility struct {
	now  func() time.Time
	tags map[string]string // the device's tags

	mu     sync.Mutex
	fields map[string]*implausible // nil until a field reads implausibly
	total  uint64
	events []payload.Record
}

type implausible struct {
	active   bool      // an "active" event was sent and no "cleared" since
	sent     time.Time // of the last "active" event
	unsent   uint64    // readings left out since the last "active" event
	min, max float64
}

// note records the implausible readings of one poll (issues with
// ReasonImplausible) and the fields that read plausibly again (ok: the
// names of the fields that decoded).
func (p *plausibility) note(f *Profile, issues []Issue, decoded map[string]payload.Value) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, is := range issues {
		if is.Reason != ReasonImplausible {
			continue
		}
		p.total++
		st := p.fields[is.Field]
		if st == nil {
			fd, _ := f.Field(is.Field)
			st = &implausible{min: fd.Min, max: fd.Max}
			if p.fields == nil {
				p.fields = map[string]*implausible{}
			}
			p.fields[is.Field] = st
		}
		st.unsent++
		if st.active && now.Sub(st.sent) < FaultEvery {
			continue
		}
		p.add("active", is.Field, now, map[string]payload.Value{
			"value": payload.Float(is.Value), "count": payload.Int(int64(st.unsent)),
			"message": payload.String(is.Field + " " + strconv.FormatFloat(is.Value, 'g', -1, 64) +
				" is outside its valid range " + rangeText(st.min, st.max) + "; left out"),
		})
		st.active, st.sent, st.unsent = true, now, 0
	}
	for name, st := range p.fields {
		if _, ok := decoded[name]; !ok {
			continue
		}
		if st.active {
			p.add("cleared", name, now, map[string]payload.Value{
				"count":   payload.Int(int64(st.unsent)),
				"message": payload.String(name + " reads within its valid range " + rangeText(st.min, st.max) + " again"),
			})
		}
		delete(p.fields, name)
	}
}

func (p *plausibility) add(state, field string, now time.Time, fields map[string]payload.Value) {
	if len(p.events) >= maxPendingFaults {
		return // nobody takes them; the counts still run
	}
	tags := maps.Clone(p.tags)
	tags["code"], tags["field"] = FaultImplausible, field
	fields["state"] = payload.String(state)
	p.events = append(p.events, payload.Record{Measurement: "fault", Tags: tags, Fields: fields, Time: now})
}

func (p *plausibility) take() []payload.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := p.events
	p.events = nil
	return ev
}

func (p *plausibility) count() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

func rangeText(lo, hi float64) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	switch {
	case lo == lo && hi == hi: // neither NaN
		return f(lo) + ".." + f(hi)
	case lo == lo:
		return ">= " + f(lo)
	}
	return "<= " + f(hi)
}
