package fleet

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func TestSeq(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := []struct {
		name string
		seqs []uint64
		want []SeqResult
		st   SeqStats
	}{
		{"in order from mid-stream", []uint64{5, 6, 7}, []SeqResult{SeqFirst, SeqInOrder, SeqInOrder}, SeqStats{LastSeq: 7}},
		{"gap then fill both ends and middle", []uint64{1, 6, 2, 5, 4, 3},
			[]SeqResult{SeqFirst, SeqGap, SeqReordered, SeqReordered, SeqReordered, SeqReordered}, SeqStats{LastSeq: 6, Reordered: 4}},
		{"middle split", []uint64{1, 10, 5, 4, 6}, []SeqResult{SeqFirst, SeqGap, SeqReordered, SeqReordered, SeqReordered},
			SeqStats{LastSeq: 10, GapsOpen: 5, Reordered: 3}},
		{"duplicates", []uint64{1, 2, 2, 1, 3}, []SeqResult{SeqFirst, SeqInOrder, SeqDuplicate, SeqDuplicate, SeqInOrder},
			SeqStats{LastSeq: 3, Duplicates: 2}},
		{"reset", []uint64{5_000_000, 5_000_002, 1, 2}, []SeqResult{SeqFirst, SeqGap, SeqReset, SeqInOrder},
			SeqStats{LastSeq: 2, Lost: 1, Resets: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s Seq
			for i, n := range c.seqs {
				if got := s.Observe(n, t0); got != c.want[i] {
					t.Errorf("Observe(%d) = %v, want %v", n, got, c.want[i])
				}
			}
			if s.Stats() != c.st {
				t.Errorf("stats = %+v, want %+v", s.Stats(), c.st)
			}
		})
	}
}

func TestSeqExpireAndBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s Seq
	s.Observe(1, t0)
	s.Observe(3, t0)                  // gap {2}
	s.Observe(6, t0.Add(time.Minute)) // gap {4,5}
	if n := s.Expire(t0.Add(90*time.Second), time.Minute); n != 1 {
		t.Errorf("expired %d, want 1 (only the older gap)", n)
	}
	if st := s.Stats(); st.Lost != 1 || st.GapsOpen != 2 {
		t.Errorf("stats = %+v", st)
	}
	if s.Observe(2, t0) != SeqDuplicate { // too late: already counted lost
		t.Error("late arrival after expiry not counted as duplicate")
	}
	// Bounded: every other number missing.
	var b Seq
	b.Observe(1, t0)
	for n := uint64(3); n < 3+2*(MaxOpenGaps+50); n += 2 {
		b.Observe(n, t0)
	}
	if len(b.gaps) > MaxOpenGaps {
		t.Errorf("%d gaps kept, bound is %d", len(b.gaps), MaxOpenGaps)
	}
	if st := b.Stats(); st.Lost != 50 || st.GapsOpen != MaxOpenGaps {
		t.Errorf("stats = %+v, want 50 lost and %d open", st, MaxOpenGaps)
	}
}

func TestParking(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	bay := func(dev, lot string, occ bool, s int) payload.Record {
		return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": dev, "bay": "1", "lot": lot},
			Fields: map[string]payload.Value{"occupied": payload.Bool(occ)}, Time: t0.Add(time.Duration(s) * time.Second)}
	}
	var p Parking
	lots := func(recs []payload.Record) string {
		var out []string
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s@%d:%d/%d/%d", r.Tags["lot"], r.Time.Unix()-t0.Unix(),
				r.Fields["capacity"].Int(), r.Fields["occupied"].Int(), r.Fields["free"].Int()))
		}
		return strings.Join(out, " ")
	}
	if got := lots(p.Apply(nil, []payload.Record{bay("a", "L", true, 1), bay("b", "L", false, 1)})); got != "L@1:1/1/0 L@1:2/1/1" {
		t.Errorf("fallback capacity: %s", got)
	}
	p.SetCapacity([]payload.DeviceInfo{{ID: "a", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}},
		{ID: "b", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}},
		{ID: "c", Measurement: "parking_bay", Tags: map[string]string{"lot": "L"}},
		{ID: "x", Measurement: "parking_bay", Tags: map[string]string{"lot": "L", "zone": "z"}}})
	got := lots(p.Apply(nil, []payload.Record{
		bay("a", "L", true, 1),  // redelivered: same time
		bay("a", "L", false, 0), // older
		bay("b", "L", true, 2),  // change
		bay("b", "L", true, 3),  // no change
		bay("a", "M", true, 4),  // bay moved to lot M
	}))
	if got != "L@2:3/2/1 L@4:3/1/2 M@4:1/1/0" {
		t.Errorf("got %s", got)
	}
}

func TestHTTP(t *testing.T) {
	f := New(time.Minute, nil)
	f.Status(&payload.Status{Site: "s1", Gateway: "gw-1", Online: true, Version: "v9", Time: time.Now(),
		Devices: []payload.DeviceInfo{{ID: "d1", Driver: "modbus"}}})
	b := &payload.Batch{Site: "s1", Gateway: "gw-1", Seq: 3, Records: make([]payload.Record, 2)}
	f.Written(b, 2)
	b.Seq = 5
	f.Written(b, 2)
	f.Reject("s1", "gw-1", ReasonSchema)
	f.Reject("", "", ReasonTopic)
	srv := httptest.NewServer(f.Handler(HTTPOptions{Metrics: func(w io.Writer) { io.WriteString(w, "extra_metric 1\n") }}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	code, body := get("/api/v1/gateways/s1/gw-1")
	for _, want := range []string{`"online": true`, `"version": "v9"`, `"messages": 2`, `"records": 4`, `"last_seq": 5`, `"gaps_open": 1`, `"schema": 1`, `"id": "d1"`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("gateway: %d, missing %s in\n%s", code, want, body)
		}
	}
	if code, _ := get("/api/v1/gateways/s1/nope"); code != 404 {
		t.Errorf("unknown gateway: %d", code)
	}
	if _, body := get("/api/v1/gateways"); !strings.Contains(body, `"gateway": "gw-1"`) || !strings.Contains(body, `"topic": 1`) {
		t.Errorf("gateways:\n%s", body)
	}
	_, body = get("/metrics")
	for _, want := range []string{
		`luling_cloud_gateway_online{site="s1",gateway="gw-1"} 1`,
		`luling_cloud_seq_gaps_open{site="s1",gateway="gw-1"} 1`,
		`luling_cloud_rejected_total{site="s1",gateway="gw-1",reason="schema"} 1`,
		`luling_cloud_rejected_total{site="",gateway="",reason="topic"} 1`,
		"# TYPE luling_cloud_messages_total counter",
		"extra_metric 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics missing %q:\n%s", want, body)
		}
	}
}
