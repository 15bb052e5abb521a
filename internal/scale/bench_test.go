package scale_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

func TestMain(m *testing.M) {
	code := m.Run()
	scale.Cleanup()
	os.Exit(code)
}

// smoke reports whether the benchmarks run at a small size: with -short or
// LULING_SCALE_SMOKE=1 (a quick check that the harness works; `make bench`
// runs the full size).
func smoke() bool { return testing.Short() || os.Getenv("LULING_SCALE_SMOKE") != "" }

// sized applies LULING_SCALE_GATEWAYS and LULING_SCALE_MEASURE (a duration),
// which shrink or stretch a full-size run on a busy machine,
// LULING_SCALE_INFLIGHT (Mosquitto's max_inflight_messages) and
// LULING_SCALE_CLOUDD_FLAGS (more cloudd flags, space-separated, such as
// "-batch-points 20000", after the run's own) and LULING_SCALE_QUOTA (each
// instance's CPU quota in cores, 0.15 for 15% of a core, in the runs that
// have one).
func sized(b *testing.B, r scale.Run) scale.Run {
	if v := os.Getenv("LULING_SCALE_INFLIGHT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("LULING_SCALE_INFLIGHT=%q: want a positive number", v)
		}
		r.Engine = scale.MosquittoEngine(n)
	}
	r.CloudFlags = append(r.CloudFlags, strings.Fields(os.Getenv("LULING_SCALE_CLOUDD_FLAGS"))...)
	if v := os.Getenv("LULING_SCALE_GATEWAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("LULING_SCALE_GATEWAYS=%q: want a positive number", v)
		}
		r.City.Gateways = n
	}
	if v := os.Getenv("LULING_SCALE_QUOTA"); v != "" && r.CPUQuota > 0 {
		q, err := strconv.ParseFloat(v, 64)
		if err != nil || q <= 0 || q > 64 {
			b.Fatalf("LULING_SCALE_QUOTA=%q: want cores, such as 0.2 for 20%% of a core", v)
		}
		r.CPUQuota = q
	}
	if v := os.Getenv("LULING_SCALE_MEASURE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("LULING_SCALE_MEASURE=%q: want a positive duration", v)
		}
		r.Measure = d
	}
	return r
}

// cityRun is the run of benchmark (a): 1,000 gateways × 300 bays at the
// demo's change rate against one cloudd behind Mosquitto, without a CPU
// quota (cloudd's CPU is reported as % of one core).
func cityRun() scale.Run {
	r := scale.Run{
		Engine: scale.Mosquitto, Instances: 1,
		City:   citysim.Config{Gateways: 1000, Devices: 300, Seed: 1},
		Warmup: 20 * time.Second, Measure: 60 * time.Second,
	}
	if smoke() {
		r.City = citysim.Config{Gateways: 20, Devices: 30, BayChange: 2 * time.Second, Seed: 1}
		r.Warmup, r.Measure = 2*time.Second, 5*time.Second
	}
	return r
}

// BenchmarkCityOneCloudd is benchmark (a) of docs/scale.md: how one cloudd
// keeps up with a city. Target: keeps up at ≤ 50% of a core, p99 ≤ 2 s.
func BenchmarkCityOneCloudd(b *testing.B) {
	for i := 0; i < b.N; i++ {
		res := scale.Exec(b, sized(b, cityRun()))
		b.Log(res)
		b.ReportMetric(float64(res.Gateways), "gateways")
		b.ReportMetric(res.Offered, "offered-readings/s")
		b.ReportMetric(res.Readings, "readings/s")
		b.ReportMetric(res.CloudCPUTotal(), "cloudd-cpu-%")
		b.ReportMetric(res.P99, "p99-latency-s")
		b.ReportMetric(b2f(res.KeptUp), "kept-up")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// scaleRun is a run of the scale-out benchmarks: n cloudd instances on
// engine e, each held to 30% of a core, sharing an offered load that one
// instance cannot carry.
func scaleRun(e scale.Engine, n int) scale.Run {
	r := scale.Run{
		Engine: e, Instances: n, CPUQuota: 0.3,
		City:   citysim.Config{Gateways: 1000, Devices: 300, BayChange: 10 * time.Second, Seed: 1},
		Warmup: 20 * time.Second, Measure: 60 * time.Second,
	}
	if smoke() {
		r.City = citysim.Config{Gateways: 20, Devices: 50, BayChange: time.Second, Seed: 1}
		r.Warmup, r.Measure = 2*time.Second, 5*time.Second
	}
	return r
}

// scaleBench runs 1 and then 3 instances on engine e and reports each
// run's throughput and, for 3, the ratio to 1. A benchmark of another
// engine is one call: scaleBench(b, thatEngine).
func scaleBench(b *testing.B, e scale.Engine) {
	var one float64
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res := scale.Exec(b, sized(b, scaleRun(e, n)))
				b.Log(res)
				b.ReportMetric(res.Offered, "offered-readings/s")
				b.ReportMetric(res.Readings, "readings/s")
				b.ReportMetric(res.CloudCPUTotal(), "cloudd-cpu-%")
				b.ReportMetric(res.P99, "p99-latency-s")
				b.ReportMetric(b2f(res.KeptUp), "kept-up")
				if n == 1 {
					one = res.Readings
				} else if one > 0 {
					b.ReportMetric(res.Readings/one, "ratio-to-1")
				}
			}
		})
	}
}

// BenchmarkCityScaleMosquitto is benchmark (c) of docs/scale.md: ingest
// throughput of 1 and of 3 cloudd instances (each at 30% of a core) sharing
// the load through Mosquitto's shared subscription, and which bound each
// run hit.
func BenchmarkCityScaleMosquitto(b *testing.B) { scaleBench(b, scale.Mosquitto) }
