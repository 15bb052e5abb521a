package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// parkingHistory is how far back LastParking looks: gateways repeat an
// unchanged bay every max_silence (1 h by default), so a bay silent for
// longer is gone (the lot view's StaleAfter is shorter still).
const parkingHistory = "30d"

// lastParkingChunk bounds the gateways of one query (its URL grows with
// them).
const lastParkingChunk = 50

// LastParking reads, for each gateway ("site/gateway"), the records that
// describe its last known parking state as InfluxDB holds them: the newest
// parking_bay record of each bay (occupied, sensor_fault), the newest fault
// event of each device whose state is offline or online, and the newest
// lane event of each lot that carries a count (occupied, capacity). A
// cloudd instance that takes gateways over rebuilds their occupancy from
// them (fleet.Fleet.RestoreParking). Gateways without such records are
// absent from the map. Times have millisecond precision.
func (in *Influx) LastParking(ctx context.Context, gateways []string) (map[string][]payload.Record, error) {
	out := map[string][]payload.Record{}
	for start := 0; start < len(gateways); start += lastParkingChunk {
		chunk := gateways[start:min(start+lastParkingChunk, len(gateways))]
		var or []string
		for _, k := range chunk {
			site, gw, ok := strings.Cut(k, "/")
			if !ok {
				return nil, fmt.Errorf("last parking state: gateway %q: want site/gateway", k)
			}
			or = append(or, fmt.Sprintf(`("site" = %s AND "gateway" = %s)`, quote(site), quote(gw)))
		}
		where := "(" + strings.Join(or, " OR ") + `) AND time > now() - ` + parkingHistory
		res, err := in.Query(ctx,
			`SELECT "occupied", "sensor_fault" FROM "parking_bay" WHERE `+where+` GROUP BY "site", "gateway", "device", "bay", "lot", "zone" ORDER BY time DESC LIMIT 1`,
			`SELECT "state" FROM "fault" WHERE `+where+` AND ("state" = 'offline' OR "state" = 'online') GROUP BY "site", "gateway", "device" ORDER BY time DESC LIMIT 1`,
			`SELECT "occupied", "capacity" FROM "lane" WHERE `+where+` AND "capacity" > 0 GROUP BY "site", "gateway", "lot" ORDER BY time DESC LIMIT 1`,
		)
		if err != nil {
			return nil, fmt.Errorf("last parking state: %w", err)
		}
		measurements := [...]string{"parking_bay", "fault", "lane"}
		tagsOf := [...][]string{{"device", "bay", "lot", "zone"}, {"device"}, {"lot"}}
		for i, r := range res {
			for _, s := range r.Series {
				for _, row := range s.Values {
					rec, ok := parkingRecord(measurements[i], tagsOf[i], s, row)
					if ok {
						k := s.Tags["site"] + "/" + s.Tags["gateway"]
						out[k] = append(out[k], rec)
					}
				}
			}
		}
	}
	return out, nil
}

// parkingRecord turns one row of LastParking's queries into a record; ok
// is false for a row that carries none of the fields the parking state
// reads, or not with their types.
func parkingRecord(measurement string, tags []string, s Series, row []any) (payload.Record, bool) {
	rec := payload.Record{Measurement: measurement, Tags: map[string]string{}, Fields: map[string]payload.Value{}}
	for _, t := range tags {
		if v := s.Tags[t]; v != "" {
			rec.Tags[t] = v
		}
	}
	for c, name := range s.Columns {
		switch v := row[c].(type) {
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return rec, false
			}
			if name == "time" {
				rec.Time = time.UnixMilli(n).UTC()
			} else {
				rec.Fields[name] = payload.Int(n)
			}
		case bool:
			rec.Fields[name] = payload.Bool(v)
		case string:
			rec.Fields[name] = payload.String(v)
		}
	}
	return rec, !rec.Time.IsZero() && len(rec.Fields) > 0
}

// RestoreParking returns the natsbus.Config.Restore hook of a cloudd: it
// rebuilds the parking occupancy of gateways ("site/gateway") taken over
// from another instance from their last bay, fault and lane records in
// InfluxDB.
func RestoreParking(in *Influx, f *fleet.Fleet) func(ctx context.Context, gateways []string) error {
	return func(ctx context.Context, gateways []string) error {
		recs, err := in.LastParking(ctx, gateways)
		if err != nil {
			return err
		}
		for _, k := range gateways {
			site, gw, _ := strings.Cut(k, "/")
			f.RestoreParking(site, gw, recs[k])
		}
		return nil
	}
}
