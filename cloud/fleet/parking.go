package fleet

import (
	"slices"
	"strings"
	"time"

	"github.com/luling-edge/luling/payload"
)

// MaxBays bounds the bays tracked per gateway (one gateway has at most
// about 500 devices); records of further bays derive no parking_lot points.
const MaxBays = 10000

// lotKey names one lot/zone of a gateway. Zone may be empty.
type lotKey struct{ lot, zone string }

type bayState struct {
	lot      lotKey
	device   string
	occupied bool
	failing  bool      // its device's last fault event said offline
	faulty   bool      // its last record had sensor_fault true
	t        time.Time // time of its last record
	faultT   time.Time // time of the last fault event applied to it
}

// unknown reports whether the bay's state is unknown.
func (b *bayState) unknown() bool { return b.failing || b.faulty }

// lotCount counts a lot's bays seen; occupied and failing count the seen
// bays that are known occupied and those that are unknown.
type lotCount struct{ seen, occupied, failing int }

// Parking derives parking_lot occupancy from one gateway's parking_bay
// records and its fault events. It keeps the last known state and time of
// each bay (keyed by the device and bay tags) and, per lot and zone, the
// number of bays seen, occupied and failing. Capacity comes from the
// gateway's birth message when it lists parking_bay devices for the lot and
// zone, and falls back to the number of bays seen.
//
// A bay is unknown, counted neither free nor occupied, while its last record
// has sensor_fault true, while its device's last fault event says offline (the gateway raises one when a device stops
// answering, and an online one when it answers again; a bay record newer
// than the offline event also shows it answers), and when the birth lists
// more bays than have reported. free = capacity - occupied - unknown, never
// below 0.
//
// A record whose time is not after its bay's last known time (a redelivery
// or an older reading) changes nothing, nor does a fault event that is not
// after the bay's last record or fault event. The zero value is ready.
//
// A lot counted at its entrance lanes (gateway/lane) sends `lane` events
// whose passages and corrections carry the lot's count (fields occupied
// and capacity). The whole lot's point (no zone) then comes from that
// count: source "counting", or "combined" when bays of the lot report too
// (their zones' points keep source "sensors"). A count older than the
// last one applied changes nothing.
//
// Every point says whether it counts towards its site's total (field
// in_total), so that a dashboard can sum a site's free bays without
// counting a combined lot's zones twice: false only for the zones of a
// counted lot. When a lot is first counted, its zones' points are
// written again with in_total false.
type Parking struct {
	bays     map[string]*bayState
	byDevice map[string][]*bayState
	lots     map[lotKey]*lotCount
	capacity map[lotKey]int
	counted  map[string]*countState // by lot
}

// Sources of a parking_lot point (its field source).
const (
	SourceSensors  = "sensors"
	SourceCounting = "counting"
	SourceCombined = "combined"
)

// countState is a lot's count as its lanes last reported it.
type countState struct {
	occupied, capacity int
	t                  time.Time
}

// SetCapacity replaces the birth capacities from a status message's device
// list: the number of parking_bay devices per lot and zone.
func (p *Parking) SetCapacity(devices []payload.DeviceInfo) {
	p.capacity = make(map[lotKey]int)
	for _, d := range devices {
		if d.Measurement != "parking_bay" || d.Tags["lot"] == "" {
			continue
		}
		p.capacity[lotKey{d.Tags["lot"], d.Tags["zone"]}]++
	}
}

// Apply feeds the bay records and fault events of a batch and appends one
// parking_lot record for every record that changed a bay's occupancy or
// whether it is known (a bay seen for the first time counts as a change),
// stamped with that record's time.
func (p *Parking) Apply(dst []payload.Record, recs []payload.Record) []payload.Record {
	for i := range recs {
		r := &recs[i]
		switch r.Measurement {
		case "parking_bay":
			dst = p.applyBay(dst, r)
		case "fault":
			dst = p.applyFault(dst, r)
		case "lane":
			dst = p.applyCount(dst, r)
		}
	}
	return dst
}

func (p *Parking) applyBay(dst []payload.Record, r *payload.Record) []payload.Record {
	occ, ok := r.Fields["occupied"]
	if !ok || occ.Type() != payload.TypeBool {
		return dst
	}
	lk := lotKey{r.Tags["lot"], r.Tags["zone"]}
	if lk.lot == "" {
		return dst
	}
	sf := r.Fields["sensor_fault"]
	faulty := sf.Type() == payload.TypeBool && sf.Bool()
	if p.bays == nil {
		p.bays = make(map[string]*bayState)
		p.byDevice = make(map[string][]*bayState)
		p.lots = make(map[lotKey]*lotCount)
	}
	dev := r.Tags["device"]
	key := dev + "\x00" + r.Tags["bay"]
	b := p.bays[key]
	if b == nil && len(p.bays) >= MaxBays {
		return dst
	}
	if b != nil && (!r.Time.After(b.t) || (b.failing && !r.Time.After(b.faultT))) {
		return dst
	}
	if b != nil && b.lot == lk && b.occupied == occ.Bool() && !b.failing && b.faulty == faulty {
		b.t = r.Time
		return dst
	}
	if b != nil {
		p.count(b, -1)
		if b.lot != lk {
			dst = append(dst, p.point(b.lot, r.Time))
		}
	} else {
		b = &bayState{device: dev}
		p.bays[key] = b
		p.byDevice[dev] = append(p.byDevice[dev], b)
	}
	b.lot, b.occupied, b.failing, b.faulty, b.t = lk, occ.Bool(), false, faulty, r.Time
	p.count(b, +1)
	return append(dst, p.point(lk, r.Time))
}

// applyFault marks the bays of a fault event's device unknown (offline)
// or known again (online).
func (p *Parking) applyFault(dst []payload.Record, r *payload.Record) []payload.Record {
	st, ok := r.Fields["state"]
	if !ok || st.Type() != payload.TypeString {
		return dst
	}
	var failing bool
	switch st.String() {
	case "offline":
		failing = true
	case "online":
	default:
		return dst
	}
	for _, b := range p.byDevice[r.Tags["device"]] {
		if !r.Time.After(b.t) || !r.Time.After(b.faultT) {
			continue
		}
		b.faultT = r.Time
		if b.failing == failing {
			continue
		}
		was := b.unknown()
		p.count(b, -1)
		b.failing = failing
		p.count(b, +1)
		if b.unknown() != was {
			dst = append(dst, p.point(b.lot, r.Time))
		}
	}
	return dst
}

// applyCount takes a lot's count from a lane event that carries one.
func (p *Parking) applyCount(dst []payload.Record, r *payload.Record) []payload.Record {
	occ, capa := r.Fields["occupied"], r.Fields["capacity"]
	lot := r.Tags["lot"]
	if lot == "" || occ.Type() != payload.TypeInt || capa.Type() != payload.TypeInt || occ.Int() < 0 || capa.Int() < 1 {
		return dst
	}
	if p.counted == nil {
		p.counted = make(map[string]*countState)
	}
	c := p.counted[lot]
	if c != nil && !r.Time.After(c.t) {
		return dst
	}
	first := c == nil
	if first {
		if len(p.counted) >= MaxBays {
			return dst
		}
		c = &countState{}
		p.counted[lot] = c
	}
	c.occupied, c.capacity, c.t = int(occ.Int()), int(capa.Int()), r.Time
	dst = append(dst, p.point(lotKey{lot: lot}, r.Time))
	if first {
		// The lot's sensor zones leave its total (in_total false) from
		// now on: say so at once rather than at their next change.
		for _, lk := range p.zonesOf(lot) {
			dst = append(dst, p.point(lk, r.Time))
		}
	}
	return dst
}

// zonesOf returns the zones of lot that bays reported in, sorted.
func (p *Parking) zonesOf(lot string) []lotKey {
	var out []lotKey
	for lk := range p.lots {
		if lk.lot == lot && lk.zone != "" {
			out = append(out, lk)
		}
	}
	slices.SortFunc(out, func(a, b lotKey) int { return strings.Compare(a.zone, b.zone) })
	return out
}

// InTotal says whether a lot/zone's point counts towards its site's total
// (its field in_total): every whole-lot point does, and so does each zone
// of a lot that nothing counts at its lanes; the zones of a counted lot
// are inside its count.
func (p *Parking) InTotal(lot, zone string) bool {
	return zone == "" || p.counted[lot] == nil
}

// Source says where a lot/zone's point comes from.
func (p *Parking) Source(lot, zone string) string {
	if zone != "" || p.counted[lot] == nil {
		return SourceSensors
	}
	for lk, c := range p.lots {
		if lk.lot == lot && c.seen > 0 {
			return SourceCombined
		}
	}
	if p.capacity[lotKey{lot, ""}] > 0 {
		return SourceCombined
	}
	return SourceCounting
}

// count adds (d = +1) or removes (d = -1) a bay from its lot's counts.
func (p *Parking) count(b *bayState, d int) {
	c := p.lots[b.lot]
	if c == nil {
		c = &lotCount{}
		p.lots[b.lot] = c
	}
	c.seen += d
	switch {
	case b.unknown():
		c.failing += d
	case b.occupied:
		c.occupied += d
	}
}

// Lot returns the current capacity, occupied, unknown and free counts of a
// lot/zone: a lot counted at its lanes gives its count for the whole lot
// (zone "").
func (p *Parking) Lot(lot, zone string) (capacity, occupied, unknown, free int) {
	if c := p.counted[lot]; c != nil && zone == "" {
		return c.capacity, c.occupied, 0, max(c.capacity-c.occupied, 0)
	}
	lk := lotKey{lot, zone}
	c := p.lots[lk]
	if c == nil {
		c = &lotCount{}
	}
	capacity = p.capacity[lk]
	if capacity == 0 {
		capacity = c.seen
	}
	unknown = c.failing
	if capacity > c.seen {
		unknown += capacity - c.seen // listed in the birth, never reported
	}
	free = capacity - c.occupied - unknown
	if free < 0 {
		free = 0
	}
	return capacity, c.occupied, unknown, free
}

func (p *Parking) point(lk lotKey, t time.Time) payload.Record {
	capacity, occupied, unknown, free := p.Lot(lk.lot, lk.zone)
	tags := map[string]string{"lot": lk.lot}
	if lk.zone != "" {
		tags["zone"] = lk.zone
	}
	return payload.Record{
		Measurement: "parking_lot",
		Tags:        tags,
		Fields: map[string]payload.Value{
			"capacity": payload.Int(int64(capacity)),
			"occupied": payload.Int(int64(occupied)),
			"unknown":  payload.Int(int64(unknown)),
			"free":     payload.Int(int64(free)),
			"source":   payload.String(p.Source(lk.lot, lk.zone)),
			"in_total": payload.Bool(p.InTotal(lk.lot, lk.zone)),
		},
		Time: t,
	}
}
