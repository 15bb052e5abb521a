package ingest

import (
	"fmt"
	"slices"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// AllowAll in Config.AllowMeasurements allows every measurement.
const AllowAll = "*"

// allowed returns the set of measurements written: the contract's
// (payload.Schema), the gateway's (payload.GatewayMeasurements) and extra;
// nil when extra holds AllowAll.
func allowed(extra []string) map[string]bool {
	if slices.Contains(extra, AllowAll) {
		return nil
	}
	m := make(map[string]bool, len(payload.Schema)+len(payload.GatewayMeasurements)+len(extra))
	for name := range payload.Schema {
		m[name] = true
	}
	for _, name := range payload.GatewayMeasurements {
		m[name] = true
	}
	for _, name := range extra {
		m[name] = true
	}
	return m
}

// CheckMeasurements checks a list for Config.AllowMeasurements: measurement
// names, or AllowAll alone.
func CheckMeasurements(names []string) error {
	for i, name := range names {
		switch {
		case name == AllowAll && len(names) > 1:
			return fmt.Errorf("%q allows every measurement; it cannot be combined with names", AllowAll)
		case name != AllowAll && !payload.ValidName(name):
			return fmt.Errorf("entry %d %q: want a measurement name ([A-Za-z_][A-Za-z0-9_.-]*, at most %d characters) or %q", i+1, name, payload.MaxNameLen, AllowAll)
		}
	}
	return nil
}

// dropped is what filter took out of a batch: how many records, and the
// first few measurement names.
type dropped struct {
	n     int
	names []string
}

// filter removes the records of measurements that are not allowed.
func (in *Ingest) filter(b *payload.Batch) dropped {
	var d dropped
	if in.allow == nil {
		return d
	}
	keep := b.Records[:0]
	for _, r := range b.Records {
		if in.allow[r.Measurement] {
			keep = append(keep, r)
			continue
		}
		d.n++
		if len(d.names) < 5 && !slices.Contains(d.names, r.Measurement) {
			d.names = append(d.names, r.Measurement)
		}
	}
	clear(b.Records[len(keep):])
	b.Records = keep
	return d
}

// dropRecords counts and logs the records filter took out of a batch
// that is written.
func (in *Ingest) dropRecords(b *payload.Batch, d dropped) {
	if d.n == 0 {
		return
	}
	in.dropped.Add(uint64(d.n))
	in.fleet.DropRecords(b.Site, b.Gateway, fleet.ReasonMeasurement, d.n)
	if ok, sup := in.limit.allow("measurement"); ok {
		in.log.Warn("records of measurements outside the schema dropped (allow them with -allow-measurements)",
			"site", b.Site, "gateway", b.Gateway, "seq", b.Seq, "records", d.n, "measurements", d.names, "suppressed_since_last", sup)
	}
}

// conflictAlert is the alert point written for a sequence conflict.
func conflictAlert(b *payload.Batch) payload.Record {
	return payload.Record{
		Measurement: "alert",
		Tags:        map[string]string{"rule": "seq_conflict", "severity": "critical"},
		Fields: map[string]payload.Value{"message": payload.String(fmt.Sprintf(
			"gateway %s/%s sent seq %d again with different content; not written, the first write is kept", b.Site, b.Gateway, b.Seq))},
		Time: time.Now(),
	}
}
