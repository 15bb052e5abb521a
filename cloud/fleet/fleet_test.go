package fleet

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// obs is one observation: a number and the hash of its content.
type obs struct{ n, h uint64 }

// same observes numbers with content hash 1000+n each (a redelivery of
// n has the same content).
func same(ns ...uint64) []obs {
	out := make([]obs, len(ns))
	for i, n := range ns {
		out[i] = obs{n, 1000 + n}
	}
	return out
}

func TestSeq(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const max = math.MaxUint64
	cases := []struct {
		name string
		obs  []obs
		want []SeqResult
		st   SeqStats
	}{
		{"in order from mid-stream", same(5, 6, 7), []SeqResult{SeqFirst, SeqInOrder, SeqInOrder}, SeqStats{LastSeq: 7}},
		{"gap then fill both ends and middle", same(1, 6, 2, 5, 4, 3),
			[]SeqResult{SeqFirst, SeqGap, SeqReordered, SeqReordered, SeqReordered, SeqReordered}, SeqStats{LastSeq: 6, Reordered: 4}},
		{"middle split", same(1, 10, 5, 4, 6), []SeqResult{SeqFirst, SeqGap, SeqReordered, SeqReordered, SeqReordered},
			SeqStats{LastSeq: 10, GapsOpen: 5, Reordered: 3}},
		{"identical duplicates", same(1, 2, 2, 1, 3), []SeqResult{SeqFirst, SeqInOrder, SeqDuplicate, SeqDuplicate, SeqInOrder},
			SeqStats{LastSeq: 3, Duplicates: 2}},
		{"conflicting duplicates", []obs{{1, 11}, {2, 12}, {2, 99}, {1, 98}, {2, 12}, {3, 13}},
			[]SeqResult{SeqFirst, SeqInOrder, SeqConflict, SeqConflict, SeqDuplicate, SeqInOrder},
			SeqStats{LastSeq: 3, Duplicates: 1, Conflicts: 2}},
		{"a refilled gap's number is known", []obs{{1, 1}, {3, 3}, {2, 2}, {2, 7}}, []SeqResult{SeqFirst, SeqGap, SeqReordered, SeqConflict},
			SeqStats{LastSeq: 3, Reordered: 1, Conflicts: 1}},
		{"reset after two consecutive numbers far below", same(5_000_000, 5_000_002, 1, 2, 3),
			[]SeqResult{SeqFirst, SeqGap, SeqFarBelow, SeqReset, SeqInOrder},
			SeqStats{LastSeq: 3, Lost: 1, FarBelow: 1, Resets: 1}},
		{"one number far below moves nothing", same(5_000_000, 1, 5_000_001, 2),
			[]SeqResult{SeqFirst, SeqFarBelow, SeqInOrder, SeqFarBelow}, SeqStats{LastSeq: 5_000_001, FarBelow: 2}},
		{"huge number rejected, tracking unmoved", same(4, max, 5, max-1, 6),
			[]SeqResult{SeqFirst, SeqJump, SeqInOrder, SeqJump, SeqInOrder}, SeqStats{LastSeq: 6}},
		{"above MaxSeq never tracked, even first or consecutive", same(max-1, max, 7),
			[]SeqResult{SeqJump, SeqJump, SeqFirst}, SeqStats{LastSeq: 7}},
		{"jump at the bound", same(4, 5+DefaultMaxJump, 6+2*DefaultMaxJump+1),
			[]SeqResult{SeqFirst, SeqGap, SeqJump}, SeqStats{LastSeq: 5 + DefaultMaxJump, GapsOpen: DefaultMaxJump}},
		{"two consecutive jumps restart tracking", same(4, 10_000_000, 10_000_003, 10_000_004),
			[]SeqResult{SeqFirst, SeqJump, SeqReset, SeqInOrder}, SeqStats{LastSeq: 10_000_004, Resets: 1}},
		{"a forged pair costs the gateway one message", same(1, 2, 1<<40, 1<<40+1, 3, 4, 5),
			[]SeqResult{SeqFirst, SeqInOrder, SeqJump, SeqReset, SeqFarBelow, SeqReset, SeqInOrder},
			SeqStats{LastSeq: 5, FarBelow: 1, Resets: 2}},
		{"a forged first number (after a cloudd restart) is undone by the gateway's next two", same(1<<50, 7, 8, 9),
			[]SeqResult{SeqFirst, SeqFarBelow, SeqReset, SeqInOrder}, SeqStats{LastSeq: 9, FarBelow: 1, Resets: 1}},
		{"older than the window: not written again", same(append(seqRange(1, Window+10), 2, 9, Window+5)...),
			append(append([]SeqResult{SeqFirst}, repeat(SeqInOrder, Window+9)...), SeqStale, SeqStale, SeqDuplicate),
			SeqStats{LastSeq: Window + 10, Duplicates: 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s Seq
			for i, o := range c.obs {
				if got := s.Observe(o.n, o.h, t0); got != c.want[i] {
					t.Errorf("Observe(%d) = %v, want %v", o.n, got, c.want[i])
				}
			}
			if s.Stats() != c.st {
				t.Errorf("stats = %+v\nwant    %+v", s.Stats(), c.st)
			}
		})
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

func repeat(r SeqResult, n int) []SeqResult {
	out := make([]SeqResult, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestSeqMaxJump(t *testing.T) {
	s := Seq{MaxJump: 10}
	for _, c := range []struct {
		n    uint64
		want SeqResult
	}{{100, SeqFirst}, {111, SeqGap}, {123, SeqJump}, {122, SeqGap}} {
		if got := s.Observe(c.n, c.n, time.Unix(0, 0)); got != c.want {
			t.Errorf("Observe(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

// Lost saturates instead of wrapping, and MaxJump is clamped.
func TestSeqCountersSaturate(t *testing.T) {
	s := Seq{MaxJump: math.MaxUint64}
	s.stats.Lost = math.MaxUint64 - 5
	t0 := time.Unix(0, 0)
	s.Observe(1, 1, t0)
	if r := s.Observe(2+MaxJumpLimit+1, 2, t0); r != SeqJump {
		t.Errorf("a jump beyond MaxJumpLimit = %v, want jump", r)
	}
	s.Observe(2+MaxJumpLimit, 3, t0) // a gap of MaxJumpLimit
	s.Expire(t0.Add(time.Hour), time.Minute)
	if st := s.Stats(); st.Lost != math.MaxUint64 || st.GapsOpen != 0 {
		t.Errorf("stats = %+v, want lost saturated at 2^64-1", st)
	}
}

func TestSeqExpireAndBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s Seq
	s.Observe(1, 1, t0)
	s.Observe(3, 3, t0)                  // gap {2}
	s.Observe(6, 6, t0.Add(time.Minute)) // gap {4,5}
	if n := s.Expire(t0.Add(90*time.Second), time.Minute); n != 1 {
		t.Errorf("expired %d, want 1 (only the older gap)", n)
	}
	if st := s.Stats(); st.Lost != 1 || st.GapsOpen != 2 {
		t.Errorf("stats = %+v", st)
	}
	// Too late: already counted lost, but never written, so it is written
	// now (lost stays: counters never go down); then it is known.
	if r := s.Observe(2, 2, t0); r != SeqLate || !r.Write() {
		t.Errorf("late arrival after expiry = %v, want late (written)", r)
	}
	if r := s.Observe(2, 2, t0); r != SeqDuplicate || r.Write() {
		t.Errorf("its redelivery = %v, want duplicate (not written)", r)
	}
	if st := s.Stats(); st.Lost != 1 || st.Late != 1 || st.Duplicates != 1 {
		t.Errorf("stats = %+v", st)
	}
	// Bounded: every other number missing.
	var b Seq
	b.Observe(1, 1, t0)
	for n := uint64(3); n < 3+2*(MaxOpenGaps+50); n += 2 {
		b.Observe(n, n, t0)
	}
	if len(b.gaps) > MaxOpenGaps {
		t.Errorf("%d gaps kept, bound is %d", len(b.gaps), MaxOpenGaps)
	}
	if st := b.Stats(); st.Lost != 50 || st.GapsOpen != MaxOpenGaps {
		t.Errorf("stats = %+v, want 50 lost and %d open", st, MaxOpenGaps)
	}
}

// A number whose write failed is written when it comes again, whatever
// its content; before that it counts as written.
func TestSeqUnwritten(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s Seq
	s.Observe(7, 70, t0)
	s.Observe(8, 80, t0)
	s.Unwritten(8, 80)
	s.Unwritten(7, 71) // another content: not the one recorded
	if r := s.Observe(8, 81, t0); r != SeqLate {
		t.Errorf("redelivery after a failed write = %v, want late", r)
	}
	if r := s.Observe(7, 71, t0); r != SeqConflict {
		t.Errorf("7 with other content = %v, want conflict", r)
	}
}

// Adversarial numbers never make a counter go down or a gap grow beyond
// the bound, and GapsOpen always equals the numbers in the open gaps.
func FuzzSeq(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0xff, 4, 0xfe, 5})
	f.Add([]byte{0x10, 0xff, 0xff, 0x11, 0xfd, 0xfd, 0x12, 0x80})
	f.Add([]byte{0x01, 0xfc, 0x02, 0xfc, 0x03, 0xfb, 0xfb})
	f.Add([]byte{0xf9, 0x05, 0x30, 0xf8, 0xf9, 0x20, 0xf8})
	f.Fuzz(func(t *testing.T, ops []byte) {
		s := Seq{MaxJump: 1000}
		t0 := time.Unix(0, 0)
		var prev SeqStats
		last := uint64(0)
		for i, op := range ops {
			var n uint64
			switch op {
			case 0xff:
				n = math.MaxUint64
			case 0xfe:
				n = MaxSeq
			case 0xfd:
				n = MaxSeq - 1
			case 0xfc:
				n = 1 << 40
			case 0xfb:
				n = last + 5000
			case 0xfa:
				s.Expire(t0.Add(time.Duration(i)*time.Second), 3*time.Second)
				continue
			case 0xf9, 0xf8: // a declared range ahead of, or around, the last number
				lo := last + 1
				if op == 0xf8 && last > 12 {
					lo = last - 12
				}
				s.Declare(payload.SeqRange{First: lo, Last: lo + uint64(i%9)}, i%2 == 0, t0.Add(time.Duration(i)*time.Second))
				if th := s.Through(); s.started && th >= s.next {
					t.Fatalf("op %d: through %d at or past next %d", i, th, s.next)
				}
				continue
			default:
				n = last + uint64(op&0x3f) - 20 // near the last number, either side
				if op&0x40 != 0 {
					n = uint64(op) << 21 // far away
				}
			}
			if op&0x80 != 0 && op < 0xfa {
				s.Unwritten(n, n)
			}
			r := s.Observe(n, n^uint64(op&1), t0.Add(time.Duration(i)*time.Second))
			if r != SeqJump {
				last = n
			}
			st := s.Stats()
			for _, c := range [][2]uint64{{prev.Lost, st.Lost}, {prev.Reordered, st.Reordered}, {prev.Late, st.Late},
				{prev.Duplicates, st.Duplicates}, {prev.Conflicts, st.Conflicts}, {prev.FarBelow, st.FarBelow}, {prev.Resets, st.Resets},
				{prev.DeclaredLost, st.DeclaredLost}, {prev.Skipped, st.Skipped}} {
				if c[1] < c[0] {
					t.Fatalf("op %d (seq %d, %v): a counter went down: %+v -> %+v", i, n, r, prev, st)
				}
			}
			var open uint64
			for _, g := range s.gaps {
				open += g.hi - g.lo + 1
			}
			if open != st.GapsOpen || len(s.gaps) > MaxOpenGaps || st.GapsOpen > MaxOpenGaps*1001 || s.next > MaxSeq+1 {
				t.Fatalf("op %d (seq %d, %v): gaps_open %d, %d in %d gaps, next %d", i, n, r, st.GapsOpen, open, len(s.gaps), s.next)
			}
			prev = st
		}
	})
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
	// c never reported and a moved away: unknown, so not free.
	if got != "L@2:3/2/0 L@4:3/1/0 M@4:1/1/0" {
		t.Errorf("got %s", got)
	}
}

func TestHTTP(t *testing.T) {
	f := New(time.Minute, nil)
	f.Status(&payload.Status{Site: "s1", Gateway: "gw-1", Online: true, Version: "v9", Time: time.Now(),
		Devices: []payload.DeviceInfo{{ID: "d1", Driver: "modbus"}}})
	b := &payload.Batch{Site: "s1", Gateway: "gw-1", Seq: 3, Records: make([]payload.Record, 2)}
	for _, o := range []obs{{3, 1}, {5, 2}, {5, 3}} {
		b.Seq = o.n
		if r, _ := f.Admit(b, o.h); r.Write() {
			f.Written(b, 2)
		}
	}
	f.Reject("s1", "gw-1", ReasonSchema)
	f.DropRecords("s1", "gw-1", ReasonMeasurement, 4)
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
	for _, want := range []string{`"online": true`, `"version": "v9"`, `"messages": 2`, `"records": 4`, `"last_seq": 5`, `"gaps_open": 1`, `"schema": 1`, `"id": "d1"`, `"conflicts": 1`, `"measurement": 4`} {
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
		`luling_cloud_seq_conflicts_total{site="s1",gateway="gw-1"} 1`,
		`luling_cloud_records_dropped_total{site="s1",gateway="gw-1",reason="measurement"} 4`,
		"# TYPE luling_cloud_messages_total counter",
		"extra_metric 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics missing %q:\n%s", want, body)
		}
	}
}

// The sequence check per message: in order, with a gap now and then.
func BenchmarkSeqObserve(b *testing.B) {
	var s Seq
	t0 := time.Unix(0, 0)
	n := uint64(1)
	for i := 0; i < b.N; i++ {
		if i%100 == 99 {
			n++ // a one-number gap
		}
		s.Observe(n, n*0x9e3779b97f4a7c15, t0)
		n++
		if i%1000 == 999 {
			s.Expire(t0.Add(time.Hour), time.Minute)
		}
	}
}
