package fleet

import (
	"slices"

	"github.com/luling-edge/luling/payload"
)

// RestoreParking rebuilds a gateway's parking occupancy from the records
// that describe its last known state: the newest parking_bay record of each
// bay, the newest fault event (state offline or online) of each device,
// and the newest lane count of each lot, as InfluxDB holds them. It is
// what a cloudd instance does when it takes a gateway over from another
// (a NATS partition moving, see cloud/natsbus): the state the previous
// owner derived from the gateway's bays is in InfluxDB, not here, and the
// bays report by exception, so waiting for them to report again would
// leave the lot's counts wrong for as long as they stay unchanged.
//
// The records are applied in time order, as Apply would have applied them;
// the parking_lot points they derive are not returned (they were written
// before). The capacities from the gateway's birth message stay. Whatever
// this fleet derived for the gateway before is replaced, so a gateway that
// comes back to an instance after another held it starts from what the
// other wrote, not from what this instance saw last.
func (f *Fleet) RestoreParking(site, gw string, recs []payload.Record) {
	sorted := slices.Clone(recs)
	slices.SortStableFunc(sorted, func(a, b payload.Record) int { return a.Time.Compare(b.Time) })
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(site, gw)
	g.parking = Parking{capacity: g.parking.capacity}
	var scratch []payload.Record
	for i := range sorted {
		scratch = g.parking.Apply(scratch[:0], sorted[i:i+1])
	}
}
