package scale

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const scrape = `# HELP luling_cloud_records_total Records.
# TYPE luling_cloud_records_total counter
luling_cloud_records_total{site="city",gateway="gw-00001"} 120
luling_cloud_records_total{site="city",gateway="gw-00002"} 30
luling_cloud_rejected_total{site="",gateway="",reason="a \"quoted\" \\ reason\n"} 2
luling_cloud_ingest_queued 0
luling_cloud_x_seconds 1.5e-3 1700000000000
luling_cloud_ingest_latency_seconds_bucket{le="0.1"} 10
luling_cloud_ingest_latency_seconds_bucket{le="1"} 90
luling_cloud_ingest_latency_seconds_bucket{le="+Inf"} 100
luling_cloud_ingest_latency_seconds_bucket{le="0.5"} 50
luling_cloud_ingest_latency_seconds_sum 40
luling_cloud_ingest_latency_seconds_count 100
`

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("luling_cloud_records_total"); got != 150 {
		t.Errorf("records sum %v, want 150", got)
	}
	if got := m["luling_cloud_rejected_total"][0].Labels["reason"]; got != "a \"quoted\" \\ reason\n" {
		t.Errorf("escaped label %q", got)
	}
	if got := m.Sum("luling_cloud_x_seconds"); got != 0.0015 {
		t.Errorf("value with timestamp: %v", got)
	}
	h := m.Histogram("luling_cloud_ingest_latency_seconds")
	if h.Count() != 100 || len(h.Bounds) != 4 || h.Bounds[1] != 0.5 || !math.IsInf(h.Bounds[3], 1) {
		t.Fatalf("histogram %+v: want 4 buckets sorted by bound, 100 observations", h)
	}
	for q, want := range map[float64]float64{0.05: 0.05, 0.5: 0.5, 0.7: 0.75, 0.9: 1, 0.99: 1} {
		if got := h.Quantile(q); math.Abs(got-want) > 1e-9 {
			t.Errorf("quantile %v = %v, want %v", q, got, want)
		}
	}
	earlier := Histogram{Bounds: h.Bounds, Counts: []float64{10, 50, 50, 50}}
	d, err := h.Sub(earlier)
	if err != nil || d.Count() != 50 || d.Quantile(0.5) != 0.8125 {
		t.Errorf("difference %+v (%v): want 50 observations, 40 in 0.5..1, median 0.8125", d, err)
	}
	sum, err := h.Add(h)
	if err != nil || sum.Count() != 200 {
		t.Errorf("sum %+v (%v)", sum, err)
	}
	if _, err := h.Add(Histogram{Bounds: []float64{1, math.Inf(1)}, Counts: []float64{1, 1}}); err == nil {
		t.Error("adding histograms of other buckets: no error")
	}
	if q := (Histogram{}).Quantile(0.99); !math.IsNaN(q) {
		t.Errorf("quantile of an empty histogram %v, want NaN", q)
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"x{a=\"1\" 2", "line 1: x: labels"},
		{"ok 1\n9bad 1", "line 2: metric name \"9bad\""},
		{"x{a=1} 2", `want key="value"`},
		{"x{a=\"1\\q\"} 2", `unknown escape \q`},
		{"x{a=\"1} 2", "unterminated value"},
		{"x one", `value "one"`},
		{"x 1 2 3", "want a value and an optional timestamp"},
		{"x", "want a name followed by labels or a value"},
		{"x{}", "want a value"},
	} {
		_, err := ParseMetrics(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.want)
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(scrape)
	f.Add("x{a=\"\\\"\",b=\"\"} -Inf\n# c\n")
	f.Add("x{le=\"+Inf\"} NaN")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMetrics(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, ss := range m {
			if name == "" {
				t.Fatalf("empty metric name from %q", in)
			}
			for _, s := range ss {
				_ = s.Value
			}
		}
		h := m.Histogram("x")
		h.Quantile(0.99)
	})
}

func TestParseProcStat(t *testing.T) {
	s, err := parseProcStat([]byte("4242 (clou) d (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Comm != "clou) d (x)" || s.PPid != 17 || s.CPU.Seconds() != 3.8 {
		t.Errorf("%+v: want comm with parentheses, ppid 17, 3.8 s CPU", s)
	}
	for _, bad := range []string{"", "1 comm S 1", "1 (c) S x 1 1 0 -1 0 0 0 0 0 1 1", "1 (c) S 1 1 1 0 -1 0 0 0 0 0 u 1", "1 (c) S 1"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestBounds(t *testing.T) {
	for _, c := range []struct {
		r     Result
		quota float64
		want  string
		drain bool
	}{
		{Result{KeptUp: true, CloudCPU: []float64{30}, MachineBusy: 99}, 0.3, "none (kept up with the offered load)", false},
		{Result{CloudCPU: []float64{29, 10}}, 0.3, "cloudd-cpu (1 of 2 instances)", false},
		{Result{CloudCPU: []float64{10}, Throttled: []float64{0.5}}, 0.3, "cloudd-cpu", false},
		{Result{CloudCPU: []float64{10}, EngineCPU: 95, InfluxCPU: 90, LateTicks: 3, MachineBusy: 95}, 0.3, "broker+influxdb+simulator+machine", false},
		{Result{CloudCPU: []float64{10}}, 0, "unknown", false},
		{Result{CloudCPU: []float64{10, 10}, Inflight: 100, MsgsPerWrite: 45, BatchPoints: 5000, PointsPerWrite: 300}, 0.3, "broker-inflight-window", false},
		{Result{CloudCPU: []float64{10}, Inflight: 1000, MsgsPerWrite: 700, BatchPoints: 5000, PointsPerWrite: 4990}, 0, "cloudd-batch-points", false},
		// A drain's writes are full by design: not a bound there.
		{Result{CloudCPU: []float64{19}, BatchPoints: 5000, PointsPerWrite: 5000, InfluxCPU: 40, MachineBusy: 70}, 0.2, "cloudd-cpu", true},
		// Three instances at their quota with equal shares; then one of
		// three at its quota, carrying most of the drain.
		{Result{CloudCPU: []float64{19, 18, 20}, InstReadings: []float64{6000, 5900, 6100}, InfluxCPU: 60}, 0.2, "cloudd-cpu", true},
		{Result{CloudCPU: []float64{19, 7, 9}, InstReadings: []float64{6000, 2500, 3000}}, 0.2, "cloudd-cpu (1 of 3 instances)+uneven-shares", true},
		// An instance killed during the window counts for neither.
		{Result{CloudCPU: []float64{0, 19}, InstReadings: []float64{0, 6000}}, 0.2, "cloudd-cpu", false},
		{Result{CloudCPU: []float64{10, 10, 10}, InstReadings: []float64{3000, 3000, 3000}, InfluxCPU: 90, InstWaiting: []float64{0.85, 0.9, 0.95}}, 0.2, "influxdb-write-time+influxdb", true},
		// Both write slots busy, InfluxDB's own time per write (280 ms)
		// most of cloudd's (300 ms): waiting for InfluxDB, although the
		// instances ran into their quota in some periods.
		{Result{CloudCPU: []float64{8, 9, 9}, Throttled: []float64{0.3, 0.4, 0.3}, InstReadings: []float64{3000, 3100, 3000}, InstWaiting: []float64{0.9, 0.95, 0.9}, ClientWriteMS: 300, InfluxWriteMS: 280}, 0.15, "influxdb-write-time", true},
		{Result{CloudCPU: []float64{8, 14, 14}, InstReadings: []float64{3000, 3100, 3000}, InstWaiting: []float64{0.9, 0.4, 0.3}, ClientWriteMS: 300, InfluxWriteMS: 280}, 0.15, "influxdb-write-time (1 of 3 instances)+cloudd-cpu (2 of 3 instances)", true},
		// The slots were busy, but InfluxDB answered in 100 ms of the 600
		// cloudd took per write: the throttled instance read its answers
		// late. Its quota held it.
		{Result{CloudCPU: []float64{15}, Throttled: []float64{0.9}, InstReadings: []float64{6000}, InstWaiting: []float64{0.95}, ClientWriteMS: 600, InfluxWriteMS: 100}, 0.15, "cloudd-cpu", true},
		// Run O of docs/scale.md: 13, 9 and 10% of a 15% quota, throttled
		// in most of their periods, two write slots each busy 29% of the
		// time (the old figure, one write at a time, said "waiting 58%").
		{Result{CloudCPU: []float64{13, 9, 10}, Throttled: []float64{0.7, 0.55, 0.6}, InstReadings: []float64{5572, 5182, 4558}, InstWaiting: []float64{0.3, 0.28, 0.29}, ClientWriteMS: 290, InfluxWriteMS: 278, InfluxCPU: 79, MachineBusy: 76}, 0.15, "cloudd-cpu", true},
		// Rarely throttled, well under the quota, not waiting: the CPU
		// scheduler held them (throttled time summed over two CPUs as
		// cgroup v1 gives it would have exceeded 20% of the window).
		{Result{CloudCPU: []float64{8, 8}, Throttled: []float64{0.1, 0.15}, InstReadings: []float64{3000, 3000}, InstWaiting: []float64{0.3, 0.3}, MachineBusy: 96}, 0.15, "machine", true},
		{Result{CloudCPU: []float64{19, 19}, InstReadings: []float64{6000, 6000}, Moves: 2, MachineBusy: 93}, 0.2, "cloudd-cpu+partitions-moved+machine", true},
		// An instance whose queue ran empty was not supplied fast enough.
		{Result{CloudCPU: []float64{12, 19}, InstReadings: []float64{5000, 5000}, InstQueued: []float64{3, 900}, MsgsPerWrite: 40}, 0.2, "cloudd-cpu (1 of 2 instances)+pull-supply", true},
		{Result{CloudCPU: []float64{19}, InstReadings: []float64{5000}, InstQueued: []float64{2000}, MsgsPerWrite: 40}, 0.2, "cloudd-cpu", true},
	} {
		if got := strings.Join(bounds(c.r, c.quota, true, c.drain), "+"); got != c.want {
			t.Errorf("bounds of %+v = %q, want %q", c.r, got, c.want)
		}
	}
}

// Records per second of CPU: an instance at 10% of a core writing 4,000
// records/s costs what one at 15% writing 6,000 does.
func TestPerCore(t *testing.T) {
	r := Result{InstReadings: []float64{6000, 4000, 0}, CloudCPU: []float64{15, 10, 0}}
	got := r.PerCore()
	if len(got) != 3 || math.Abs(got[0]-40000) > 1e-6 || math.Abs(got[1]-40000) > 1e-6 || got[2] != 0 {
		t.Errorf("PerCore = %v, want [40000 40000 0]", got)
	}
}

func TestBatchPoints(t *testing.T) {
	for flags, want := range map[string]int{"": 5000, "-batch-points 20000": 20000, "--batch-points=300 -x": 300, "-seq-grace 1m": 5000} {
		if got := batchPoints(strings.Fields(flags)); got != want {
			t.Errorf("batchPoints(%q) = %d, want %d", flags, got, want)
		}
	}
}

func TestParseInfluxWrites(t *testing.T) {
	w, err := parseInfluxWrites(strings.NewReader(`{"system":{"currentTime":"x"},"memstats":{"Alloc":1},
"httpd::8086":{"name":"httpd","tags":{"bind":"127.0.0.1:8086"},"values":{"writeReq":4,"writeReqDurationNs":2000000000,"req":9}},
"database:db":{"name":"database","values":{"numSeries":3}}}`))
	if err != nil || w.Requests != 4 || w.Duration.Seconds() != 2 {
		t.Errorf("parse = %+v, %v: want 4 requests, 2 s", w, err)
	}
	for _, bad := range []string{`{"x":{"name":"database","values":{}}}`, `[1]`, `{`} {
		if _, err := parseInfluxWrites(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("4242 (clou) d (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 1 2 3\n")
	f.Add("1 (c) S 1")
	f.Add("1 () R 0 0 0 0 0 0 0 0 0 0 18446744073709551615 1")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := parseProcStat([]byte(in))
		if err == nil && s.CPU < 0 {
			t.Fatalf("%q: negative CPU time %v", in, s.CPU)
		}
	})
}

// A histogram survives JSON (a recording) with its +Inf bucket.
func TestHistogramJSON(t *testing.T) {
	h := Histogram{Bounds: []float64{0.5, 2, math.Inf(1)}, Counts: []float64{3, 7, 9}}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, h) {
		t.Errorf("%s read back as %+v, %v; want %+v", b, back, err, h)
	}
	for _, bad := range []string{`{"Bounds":["x"],"Counts":[1]}`, `{"Bounds":["1"],"Counts":[]}`, `[`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestParseCPUStat(t *testing.T) {
	v1 := "nr_periods 200\nnr_throttled 150\nthrottled_time 23000000000\nnr_bursts 0\nburst_time 0\n"
	v2 := "usage_usec 9000\nuser_usec 8000\nsystem_usec 1000\nnr_periods 40\nnr_throttled 10\nthrottled_usec 500000\n"
	for in, want := range map[string]CPUStat{v1: {200, 150, 23 * time.Second}, v2: {40, 10, 500 * time.Millisecond}} {
		got, err := parseCPUStat([]byte(in))
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	// 23 s throttled in a 20 s window on two CPUs: the time is no share,
	// the periods are: 120 of the 180 periods since the earlier reading.
	if got := (CPUStat{Periods: 200, ThrottledPeriods: 150}).ThrottledShare(CPUStat{Periods: 20, ThrottledPeriods: 30}); math.Abs(got-2.0/3) > 1e-9 {
		t.Errorf("ThrottledShare = %v, want 2/3", got)
	}
	if got := (CPUStat{Periods: 5}).ThrottledShare(CPUStat{Periods: 5}); got != 0 {
		t.Errorf("ThrottledShare without periods = %v, want 0", got)
	}
	for bad, want := range map[string]string{
		"":                               "found 0",
		"nr_periods 1\nnr_throttled 1\n": "found 2",
		"nr_periods x\nnr_throttled 1\nthrottled_time 0":                    "line 1: nr_periods",
		"nr_periods 1\nnr_throttled 2\nthrottled_time 0":                    "above nr_periods",
		"nr_periods 1\nnr_throttled 0\nthrottled_usec 18446744073709551615": "too large",
	} {
		if _, err := parseCPUStat([]byte(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want one saying %q", bad, err, want)
		}
	}
}

func FuzzParseCPUStat(f *testing.F) {
	f.Add("nr_periods 200\nnr_throttled 150\nthrottled_time 23000000000\n")
	f.Add("nr_periods 40\nnr_throttled 10\nthrottled_usec 500000\n")
	f.Add("nr_periods 1\nnr_throttled 0\nthrottled_usec 18446744073709551615")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := parseCPUStat([]byte(in))
		if err == nil && (s.ThrottledPeriods > s.Periods || s.ThrottledTime < 0 || s.ThrottledShare(CPUStat{}) > 1) {
			t.Fatalf("%q: %+v", in, s)
		}
	})
}

func FuzzParseInfluxWrites(f *testing.F) {
	f.Add(`{"httpd::8086":{"name":"httpd","values":{"writeReq":4,"writeReqDurationNs":2000000000}}}`)
	f.Add(`{"a":{"name":"httpd","values":{}},"b":1}`)
	f.Fuzz(func(t *testing.T, in string) {
		parseInfluxWrites(strings.NewReader(in))
	})
}
