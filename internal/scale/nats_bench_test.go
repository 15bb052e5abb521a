package scale_test

import (
	"testing"

	"github.com/luling-edge/luling/internal/scale"
)

// BenchmarkCityScaleNATS is benchmark (b) of docs/scale.md: ingest
// throughput of 1 and of 3 cloudd instances on the NATS engine (a 3-node
// JetStream cluster, the stream in 12 partitions shared by the instances),
// each instance held to 30% of a core, the same offered load as
// BenchmarkCityScaleMosquitto; the ratio of 3 to 1 (target ≥ 2.7) and
// which bound each run hit.
func BenchmarkCityScaleNATS(b *testing.B) {
	var one float64
	for _, n := range []int{1, 3} {
		b.Run(map[int]string{1: "instances=1", 3: "instances=3"}[n], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := scaleRun(n)
				r.Engine = scale.NATS
				res := scale.Exec(b, sized(b, r))
				b.Log(res)
				b.ReportMetric(res.Offered, "offered-readings/s")
				b.ReportMetric(res.Readings, "readings/s")
				b.ReportMetric(res.CloudCPUTotal(), "cloudd-cpu-%")
				b.ReportMetric(res.EngineCPU, "nats-cpu-%")
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
