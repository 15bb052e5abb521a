package scale_test

import (
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

// natsScaleRun is a run of benchmark (b): n cloudd instances on the NATS
// engine, each held to 30% of a core, draining the backlog that 250
// gateways of 1,200 bays changing every 10 s (30,000 records a second, the
// rate offered in benchmark (c)) publish in natsFill. Fewer, larger
// gateways than benchmark (c): each MQTT gateway costs the NATS cluster a
// session and two replicated JetStream consumers (its QoS 1 subscriptions
// to its ack and command topics), which this 2-core machine, shared with
// the cloudd instances, InfluxDB and the simulator, sets up slowly.
func natsScaleRun(n int) (scale.Run, time.Duration) {
	r := scale.Run{
		Engine: scale.NATS, Instances: n, CPUQuota: 0.3,
		City:    citysim.Config{Gateways: 250, Devices: 1200, BayChange: 10 * time.Second, Seed: 1},
		Measure: 4 * time.Minute, // the longest a drain may take
	}
	fill := 10 * time.Second
	if smoke() {
		r.City = citysim.Config{Gateways: 10, Devices: 200, BayChange: time.Second, Seed: 1}
		r.Measure, fill = time.Minute, 15*time.Second
	}
	return r, fill
}

// BenchmarkCityScaleNATS is benchmark (b) of docs/scale.md: ingest
// throughput of 1 and of 3 cloudd instances on the NATS engine (a 3-node
// JetStream cluster, the stream in 12 partitions shared by the
// instances), each instance held to 30% of a core, measured as the rate
// at which they drain a backlog (scale.Drain); the ratio of 3 to 1
// (target ≥ 2.7) and which bound each run hit.
func BenchmarkCityScaleNATS(b *testing.B) {
	var one float64
	for _, n := range []int{1, 3} {
		b.Run(map[int]string{1: "instances=1", 3: "instances=3"}[n], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r, fill := natsScaleRun(n)
				res := scale.Drain(b, sized(b, r), fill)
				b.Logf("drained %.0f records: %v", res.Offered, res)
				b.ReportMetric(res.Readings, "readings/s")
				b.ReportMetric(res.CloudCPUTotal(), "cloudd-cpu-%")
				b.ReportMetric(res.EngineCPU, "nats-cpu-%")
				if n == 1 {
					one = res.Readings
				} else if one > 0 {
					b.ReportMetric(res.Readings/one, "ratio-to-1")
				}
			}
		})
	}
}
