package payload

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleBatch() *Batch {
	t0 := time.Date(2026, 11, 25, 8, 30, 0, 123456789, time.UTC)
	return &Batch{
		Site: "lot-a", Gateway: "gw-01", Seq: 42, Kind: Telemetry, Sent: t0.Add(time.Second),
		Records: []Record{
			{Measurement: "parking_bay", Time: t0,
				Tags:   map[string]string{"device": "bay-017", "lot": "a", "zone": "z1", "bay": "017"},
				Fields: map[string]Value{"occupied": Bool(true), "distance_cm": Float(120)}},
			{Measurement: "gateway_health", Time: t0.Add(time.Millisecond),
				Fields: map[string]Value{"rss_bytes": Int(12345678), "uplink_connected": Bool(false), "note": String(`a "quoted" <tag>` + "\n")}},
		},
	}
}

func TestEncodeGolden(t *testing.T) {
	body, err := AppendBatch(nil, sampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"site":"lot-a","gateway":"gw-01","seq":42,"kind":"telemetry","sent":"2026-11-25T08:30:01.123456789Z","records":[` +
		`{"m":"parking_bay","t":"2026-11-25T08:30:00.123456789Z","tags":{"bay":"017","device":"bay-017","lot":"a","zone":"z1"},"fields":{"distance_cm":120.0,"occupied":true}},` +
		`{"m":"gateway_health","t":"2026-11-25T08:30:00.124456789Z","fields":{"note":"a \"quoted\" \u003ctag\u003e\n","rss_bytes":12345678,"uplink_connected":false}}]}`
	if string(body) != want {
		t.Fatalf("encoding changed:\n got %s\nwant %s", body, want)
	}
}

func TestRoundTripKeepsTypes(t *testing.T) {
	in := sampleBatch()
	body, err := AppendBatch(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(body)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	if out.Seq != 42 || out.Site != "lot-a" || out.Gateway != "gw-01" || out.Kind != Telemetry || !out.Sent.Equal(in.Sent) {
		t.Fatalf("header: %+v", out)
	}
	for i := range in.Records {
		a, b := in.Records[i], out.Records[i]
		if a.Measurement != b.Measurement || !a.Time.Equal(b.Time) || len(a.Tags) != len(b.Tags) || len(a.Fields) != len(b.Fields) {
			t.Fatalf("record %d: %+v != %+v", i, a, b)
		}
		for k, v := range a.Fields {
			if !v.Equal(b.Fields[k]) {
				t.Errorf("record %d field %s: sent %s %v, got %s %v", i, k, v.Type(), v, b.Fields[k].Type(), b.Fields[k])
			}
		}
	}
}

func TestFloatAlwaysLooksLikeFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -3, 1e21, 1.5, 123456789} {
		b := appendValue(nil, Float(f))
		v, err := decodeValue(b)
		if err != nil || v.Type() != TypeFloat || v.Float() != f {
			t.Errorf("%v encoded as %s decoded as %s %v (%v)", f, b, v.Type(), v, err)
		}
	}
}

func TestEncodeRejectsNaN(t *testing.T) {
	b := sampleBatch()
	b.Records[0].Fields["distance_cm"] = Float(nan())
	if _, err := AppendBatch(nil, b); err == nil || !strings.Contains(err.Error(), `field "distance_cm"`) {
		t.Fatalf("want an error naming the field, got %v", err)
	}
}

func nan() float64 { var z float64; return z / z }

func TestDecodeErrors(t *testing.T) {
	ok := `{"m":"parking_bay","t":"2026-11-25T08:30:00Z","tags":{"device":"d","bay":"1"},"fields":{"occupied":true}}`
	head := `{"v":1,"site":"s","gateway":"g","seq":1,"kind":"telemetry","records":[`
	cases := []struct{ body, want string }{
		{`not json`, "invalid JSON"},
		{`{"site":"s"}`, `missing "v"`},
		{`{"v":2,"site":"s","gateway":"g","seq":1,"kind":"telemetry","records":[` + ok + `]}`, "unsupported schema version"},
		{`{"v":1,"site":"S!","gateway":"g","seq":1,"kind":"telemetry","records":[` + ok + `]}`, `"site" "S!"`},
		{`{"v":1,"site":"s","gateway":"g","seq":0,"kind":"telemetry","records":[` + ok + `]}`, `"seq" missing or 0`},
		{`{"v":1,"site":"s","gateway":"g","seq":1,"kind":"logs","records":[` + ok + `]}`, `unknown kind "logs"`},
		{`{"v":1,"site":"s","gateway":"g","seq":1,"kind":"telemetry","records":[]}`, `"records" is empty`},
		{`{"v":1,"site":"s","gateway":"g","seq":1,"kind":"telemetry","extra":1,"records":[` + ok + `]}`, `unknown field "extra"`},
		{head + `{"m":"parking_bay","t":"2026-11-25T08:30:00Z","tags":{"device":"d","bay":"1"},"fields":{"occupied":1}}]}`, `records[0]: parking_bay: field "occupied" is int, the contract says bool`},
		{head + `{"m":"parking_bay","t":"2026-11-25T08:30:00Z","tags":{"bay":"1"},"fields":{"occupied":true}}]}`, `missing required tag "device"`},
		{head + `{"m":"x","t":"yesterday","fields":{"a":1}}]}`, `x: "t": parsing time`},
		{head + `{"m":"x","t":"2026-11-25T08:30:00Z","fields":{"a":null}}]}`, `field "a": null is not a value`},
		{head + `{"m":"x","t":"2026-11-25T08:30:00Z","fields":{"a":[1]}}]}`, `field "a": want a number, bool or string`},
		{head + `{"m":"x","t":"2026-11-25T08:30:00Z","tags":{"site":"other"},"fields":{"a":1}}]}`, `tag name "site" is not allowed`},
		{head + `{"m":"x","t":"2026-11-25T08:30:00Z","fields":{}}]}`, `"fields" is empty`},
		{head + ok + `]} {}`, "trailing data"},
	}
	for _, c := range cases {
		_, err := DecodeBatch([]byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("body %s\n want error containing %q, got %v", c.body, c.want, err)
			continue
		}
		if !errors.Is(err, ErrSchema) {
			t.Errorf("error %v does not wrap ErrSchema", err)
		}
	}
}

func TestTopics(t *testing.T) {
	tp, err := ParseTopic("gw/v1/lot-a/gw-01/telemetry")
	if err != nil || tp.Kind != Telemetry || tp.Site != "lot-a" || tp.Gateway != "gw-01" {
		t.Fatalf("%+v %v", tp, err)
	}
	if TopicFor("lot-a", "gw-01", Event) != "gw/v1/lot-a/gw-01/events" {
		t.Fatal(TopicFor("lot-a", "gw-01", Event))
	}
	tp, err = ParseTopic("gw/v1/s/g/cmd/abc")
	if err != nil || tp.ID != "abc" {
		t.Fatalf("%+v %v", tp, err)
	}
	for _, bad := range []string{"gw/v2/s/g/telemetry", "gw/v1/S/g/telemetry", "gw/v1/s/g/other", "gw/v1/s/g/telemetry/x", "gw/v1/s/g/cmd", "gw/v1/s"} {
		if _, err := ParseTopic(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	b := sampleBatch()
	tp, _ = ParseTopic("gw/v1/lot-a/gw-02/telemetry")
	if err := CheckIdentity(tp, b); err == nil || !strings.Contains(err.Error(), "identity mismatch") {
		t.Fatalf("want identity mismatch, got %v", err)
	}
	tp, _ = ParseTopic("gw/v1/lot-a/gw-01/events")
	if err := CheckIdentity(tp, b); err == nil || !strings.Contains(err.Error(), "stream mismatch") {
		t.Fatalf("want stream mismatch, got %v", err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	s := &Status{Site: "lot-a", Gateway: "gw-01", Online: true, Version: "1.0", Time: time.Unix(1, 0).UTC(),
		Devices: []DeviceInfo{{ID: "bay-001", Driver: "modbus", Measurement: "parking_bay", Tags: map[string]string{"lot": "a"}}}}
	got, err := DecodeStatus(EncodeStatus(s))
	if err != nil || !got.Online || len(got.Devices) != 1 || got.Devices[0].Tags["lot"] != "a" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := DecodeStatus([]byte(`{"v":1,"site":"","gateway":"g"}`)); err == nil {
		t.Fatal("bad identity accepted")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	body, _ := AppendBatch(nil, sampleBatch())
	f.Add(body)
	f.Add([]byte(`{"v":1,"site":"s","gateway":"g","seq":1,"kind":"events","records":[{"m":"alert","t":"2026-01-01T00:00:00Z","tags":{"rule":"r","severity":"high"},"fields":{"message":"x"}}]}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"site":"s","gateway":"g","seq":1,"kind":"telemetry","records":[{"m":"x","t":"2026-01-01T00:00:00Z","fields":{"a":1e400}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("error does not wrap ErrSchema: %v", err)
			}
			return
		}
		// What the decoder accepts must encode and decode to the same thing.
		again, err := AppendBatch(nil, b)
		if err != nil {
			t.Fatalf("accepted batch does not encode: %v", err)
		}
		b2, err := DecodeBatch(again)
		if err != nil {
			t.Fatalf("re-encoded batch rejected: %v\n%s", err, again)
		}
		if len(b2.Records) != len(b.Records) || b2.Seq != b.Seq {
			t.Fatalf("round trip changed the batch")
		}
		for i := range b.Records {
			for k, v := range b.Records[i].Fields {
				if !v.Equal(b2.Records[i].Fields[k]) {
					t.Fatalf("field %s: %s %v became %s %v", k, v.Type(), v, b2.Records[i].Fields[k].Type(), b2.Records[i].Fields[k])
				}
			}
		}
	})
}

func BenchmarkEncodeBatch500(b *testing.B) {
	recs := make([]Record, 500)
	t0 := time.Now()
	for i := range recs {
		recs[i] = Record{Measurement: "parking_bay", Time: t0,
			Tags:   map[string]string{"device": "bay-017", "lot": "a", "zone": "z1", "bay": "017"},
			Fields: map[string]Value{"occupied": Bool(i%2 == 0), "distance_cm": Float(120.5)}}
	}
	batch := &Batch{Site: "lot-a", Gateway: "gw-01", Seq: 1, Kind: Telemetry, Sent: t0, Records: recs}
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendBatch(buf[:0], batch)
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(buf))/float64(len(recs)), "bytes/record")
}

func BenchmarkDecodeBatch500(b *testing.B) {
	recs := make([]Record, 500)
	t0 := time.Now()
	for i := range recs {
		recs[i] = Record{Measurement: "parking_bay", Time: t0,
			Tags:   map[string]string{"device": "bay-017", "lot": "a", "zone": "z1", "bay": "017"},
			Fields: map[string]Value{"occupied": Bool(i%2 == 0), "distance_cm": Float(120.5)}}
	}
	body, _ := AppendBatch(nil, &Batch{Site: "lot-a", Gateway: "gw-01", Seq: 1, Kind: Telemetry, Sent: t0, Records: recs})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeBatch(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}
