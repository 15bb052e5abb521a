package fleet

import (
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
	occupied bool
	t        time.Time
}

type lotCount struct{ seen, occupied int }

// Parking derives parking_lot occupancy from one gateway's parking_bay
// records. It keeps the last known state and time of each bay (keyed by the
// device and bay tags) and, per lot and zone, the number of bays seen and
// occupied. Capacity comes from the gateway's birth message when it lists
// parking_bay devices for the lot and zone, and falls back to the number of
// bays seen. A record whose time is not after its bay's last known time
// (a redelivery or an older reading) changes nothing. The zero value is
// ready.
type Parking struct {
	bays     map[string]*bayState
	lots     map[lotKey]*lotCount
	capacity map[lotKey]int
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

// Apply feeds the bay records of a batch and appends one parking_lot record
// for every record that changed a bay's occupancy (a bay seen for the first
// time counts as a change), stamped with that record's time.
func (p *Parking) Apply(dst []payload.Record, recs []payload.Record) []payload.Record {
	for i := range recs {
		r := &recs[i]
		if r.Measurement != "parking_bay" {
			continue
		}
		occ, ok := r.Fields["occupied"]
		if !ok || occ.Type() != payload.TypeBool {
			continue
		}
		lk := lotKey{r.Tags["lot"], r.Tags["zone"]}
		if lk.lot == "" {
			continue
		}
		if p.bays == nil {
			p.bays = make(map[string]*bayState)
			p.lots = make(map[lotKey]*lotCount)
		}
		key := r.Tags["device"] + "\x00" + r.Tags["bay"]
		b := p.bays[key]
		if b == nil && len(p.bays) >= MaxBays {
			continue
		}
		if b != nil && !r.Time.After(b.t) {
			continue
		}
		if b != nil && b.lot == lk && b.occupied == occ.Bool() {
			b.t = r.Time
			continue
		}
		if b != nil {
			old := p.lots[b.lot]
			old.seen--
			if b.occupied {
				old.occupied--
			}
			if b.lot != lk {
				dst = append(dst, p.point(b.lot, r.Time))
			}
		} else {
			b = &bayState{}
			p.bays[key] = b
		}
		b.lot, b.occupied, b.t = lk, occ.Bool(), r.Time
		c := p.lots[lk]
		if c == nil {
			c = &lotCount{}
			p.lots[lk] = c
		}
		c.seen++
		if b.occupied {
			c.occupied++
		}
		dst = append(dst, p.point(lk, r.Time))
	}
	return dst
}

// Lot returns the current capacity, occupied and free counts of a lot/zone.
func (p *Parking) Lot(lot, zone string) (capacity, occupied, free int) {
	lk := lotKey{lot, zone}
	c := p.lots[lk]
	if c == nil {
		c = &lotCount{}
	}
	capacity = p.capacity[lk]
	if capacity == 0 {
		capacity = c.seen
	}
	free = capacity - c.occupied
	if free < 0 {
		free = 0
	}
	return capacity, c.occupied, free
}

func (p *Parking) point(lk lotKey, t time.Time) payload.Record {
	capacity, occupied, free := p.Lot(lk.lot, lk.zone)
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
			"free":     payload.Int(int64(free)),
		},
		Time: t,
	}
}
