package natsbus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
)

// What else moves with a partition.
//
// Besides the sequence state (state.go), an instance keeps per gateway:
//
//   - the parking occupancy derived from its bay records, fault events and
//     lane counts (fleet.Parking), from which every parking_lot point is
//     written. The previous owner wrote every record it acknowledged to
//     InfluxDB, so the new owner rebuilds the occupancy from the newest of
//     them there (Config.Restore; cloudd passes web.Influx.LastParking and
//     fleet.Fleet.RestoreParking) before it pulls the first message. A
//     message the previous owner took but did not acknowledge comes again
//     and is applied on top; one it wrote but did not acknowledge is a
//     duplicate, not applied twice, and already in what was read back.
//     The capacities come from the gateways' birth messages, which every
//     instance reads (the status stream), as do the online states;
//   - the counters (messages, records, duplicates, …): they stay with the
//     instance that counted them; sum them over the instances;
//   - queued commands (cloud/command) are not a partition's: they are kept
//     by the instance that took the HTTP request, which follows every
//     gateway's status itself and publishes them at the gateway's birth,
//     whichever instance holds its partition. They are lost if that
//     instance stops first (sending again with the same id is safe).

// restore runs Config.Restore for the gateways of partition p's recorded
// states.
func (b *Bus) restore(ctx context.Context, p int, states map[string]fleet.SeqState) error {
	if b.cfg.Restore == nil || len(states) == 0 {
		return nil
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	start := time.Now()
	if err := b.cfg.Restore(ctx, keys); err != nil {
		return fmt.Errorf("restore the state of %d gateways: %w", len(keys), err)
	}
	b.log.Debug("restored the gateways' state", "partition", p, "gateways", len(keys), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
