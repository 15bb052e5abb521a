package ingest_test

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/payload"
)

// FuzzIngestPayload feeds arbitrary topics and bodies through the whole
// validation and encoding path: it must never panic, a rejection must
// name a known reason, and an accepted batch must become exactly one line
// per record (plus derived parking_lot lines).
func FuzzIngestPayload(f *testing.F) {
	g := &gateway{t: f, site: "harbor", gw: "gw-1"}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Add("gw/v1/harbor/gw-1/telemetry", g.batch(1, payload.Telemetry, pv("inv-1", 1.5, ts), bay("b1", "north", "a", true, ts)))
	f.Add("gw/v1/harbor/gw-1/events", g.batch(2, payload.Event, payload.Record{Measurement: "alert",
		Tags: map[string]string{"rule": "r", "severity": "high"}, Fields: map[string]payload.Value{"message": payload.String("a \"b\"\n")}, Time: ts}))
	f.Add("gw/v1/harbor/gw-2/telemetry", g.batch(3, payload.Telemetry, pv("inv-1", 2, ts)))
	f.Add("gw/v1/harbor/gw-1/status", payload.EncodeStatus(&payload.Status{Site: "harbor", Gateway: "gw-1", Online: true, Time: ts}))
	f.Add("gw/v1/Harbor/gw-1/telemetry", []byte(`{}`))
	f.Add("gw/v1/harbor/gw-1/telemetry", []byte(`{"v":1,"site":"harbor","gateway":"gw-1","seq":1,"kind":"telemetry","records":[{"m":"x","t":"2026-01-01T00:00:00Z","tags":{"a":"b\\"},"fields":{"f":1e400}}]}`))
	f.Add("gw/v1/harbor/gw-1/telemetry", []byte("\xff\x00"))
	f.Add("gw/v1/harbor/gw-1/telemetry", g.batch(math.MaxUint64, payload.Telemetry, pv("inv-1", 3, ts)))
	f.Add("gw/v1/harbor/gw-1/telemetry", g.batch(1<<40, payload.Telemetry, pv("inv-1", 4, ts)))
	known := map[string]bool{fleet.ReasonTopic: true, fleet.ReasonSchema: true, fleet.ReasonIdentity: true, fleet.ReasonUnwritable: true, fleet.ReasonStatus: true}
	fl := fleet.New(time.Minute, nil)
	var keys influxw.Keys
	f.Fuzz(func(t *testing.T, topic string, body []byte) {
		if s, err := ingest.ValidateStatus(topic, body); err == nil {
			fl.Status(s)
		}
		b, err := ingest.Validate(topic, body)
		if err != nil {
			var r *ingest.Rejection
			if !errors.As(err, &r) || !known[r.Reason] || r.Err == nil || r.Error() == "" {
				t.Fatalf("rejection %#v does not name a known reason", err)
			}
			return
		}
		derived := fl.Derive(nil, b)
		var lines []byte
		for _, recs := range [][]payload.Record{b.Records, derived} {
			for i := range recs {
				lines = influxw.AppendLine(lines, &keys, b.Site, b.Gateway, &recs[i])
				lines = append(lines, '\n')
			}
		}
		if n := bytes.Count(lines, []byte{'\n'}); n != len(b.Records)+len(derived) {
			// A raw newline may only appear inside a quoted string field.
			hasString := false
			for _, r := range b.Records {
				for _, v := range r.Fields {
					hasString = hasString || v.Type() == payload.TypeString
				}
			}
			if !hasString {
				t.Fatalf("%d lines for %d records", n, len(b.Records)+len(derived))
			}
		}
		// The sequence check takes any number: a rejected one moves
		// nothing, and no counter goes down.
		before, _ := fl.Gateway(b.Site, b.Gateway)
		res, _ := fl.Admit(b, uint64(len(lines)))
		if res.Write() {
			fl.Written(b, len(b.Records))
		}
		after, _ := fl.Gateway(b.Site, b.Gateway)
		if res == fleet.SeqJump && (after.Seq != before.Seq) {
			t.Fatalf("rejected seq %d moved tracking: %+v -> %+v", b.Seq, before.Seq, after.Seq)
		}
		if after.Seq.Lost < before.Seq.Lost || after.Seq.Duplicates < before.Seq.Duplicates || after.Seq.Resets < before.Seq.Resets ||
			after.Messages < before.Messages {
			t.Fatalf("seq %d (%v): a counter went down: %+v -> %+v", b.Seq, res, before, after)
		}
	})
}
