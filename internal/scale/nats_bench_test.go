package scale_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

// NATSQuota is each cloudd instance's CPU quota in benchmark (b): 12% of a
// core. A record costs the machine about 60 µs of CPU (cloudd 16,
// InfluxDB 30, NATS 12: run R of docs/scale.md, BenchmarkInfluxCost), so
// three instances at a quota q bring it to about 11 q cores: at 15% to
// 1.7 of this machine's 2, which left the machine, not the quota, the
// bound (runs O, P, R: the three got 9-13% each); at 12% to 1.35 (run S:
// both sizes bound by the quota, ratio 3.14). LULING_SCALE_QUOTA
// overrides it.
const NATSQuota = 0.12

// natsScaleRun is a run of benchmark (b): n cloudd instances on the NATS
// engine, each held to NATSQuota, draining the backlog that 240 gateways
// of 1,200 bays changing every 10 s (28,800 records a second, about the
// rate offered in benchmark (c)) publish in natsFill. The gateways are
// chosen to spread evenly over the 12 partitions (scale.Drain,
// scale.EvenGateways). Fewer, larger gateways than benchmark (c): each
// MQTT gateway costs the NATS cluster a session and two replicated
// JetStream consumers (its QoS 1 subscriptions to its ack and command
// topics), which this 2-core machine, shared with the cloudd instances,
// InfluxDB and the simulator, sets up slowly.
func natsScaleRun(n int) (scale.Run, time.Duration) {
	r := scale.Run{
		Engine: scale.NATS, Instances: n, CPUQuota: NATSQuota,
		// An InfluxDB of its own for each run: on the shared server the
		// three instances wrote next to the lone one's 290,000 series.
		InfluxData: map[string]string{},
		City:       citysim.Config{Gateways: 240, Devices: 1200, BayChange: 10 * time.Second, Seed: 1},
		Measure:    3 * time.Minute, // the longest a drain may take
	}
	fill := 8 * time.Second
	if smoke() {
		r.City = citysim.Config{Gateways: 12, Devices: 1000, BayChange: time.Second, Seed: 1}
		r.Measure, fill = time.Minute, 10*time.Second
	}
	return r, fill
}

// BenchmarkCityScaleNATS is benchmark (b) of docs/scale.md: ingest
// throughput of 1 and of 3 cloudd instances on the NATS engine (a 3-node
// JetStream cluster, the stream in 12 partitions shared by the
// instances), each instance held to NATSQuota, measured as the rate at
// which they drain a backlog (scale.Drain); each instance's rate, CPU,
// share of its quota periods throttled and of its write slots busy, the
// ratio of 3 to 1 (target ≥ 2.7) and which bound
// each run hit.
func BenchmarkCityScaleNATS(b *testing.B) {
	var one float64
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r, fill := natsScaleRun(n)
				res := scale.Drain(b, sized(b, r), fill)
				b.Logf("drained %.0f records: %v", res.Offered, res)
				b.ReportMetric(res.Readings, "readings/s")
				b.ReportMetric(res.CloudCPUTotal(), "cloudd-cpu-%")
				perCore := res.PerCore()
				for j := range res.InstReadings {
					b.ReportMetric(res.InstReadings[j], fmt.Sprintf("cloudd%d-readings/s", j))
					b.ReportMetric(perCore[j], fmt.Sprintf("cloudd%d-readings/core-s", j))
					b.ReportMetric(res.CloudCPU[j], fmt.Sprintf("cloudd%d-cpu-%%", j))
					b.ReportMetric(100*res.Throttled[j], fmt.Sprintf("cloudd%d-throttled-periods-%%", j))
					b.ReportMetric(100*res.InstWaiting[j], fmt.Sprintf("cloudd%d-write-slots-busy-%%", j))
				}
				b.ReportMetric(res.EngineCPU, "nats-cpu-%")
				b.ReportMetric(res.InfluxCPU, "influxd-cpu-%")
				b.ReportMetric(res.MachineBusy, "machine-busy-%")
				if n == 1 {
					one = res.Readings
				} else if one > 0 {
					b.ReportMetric(res.Readings/one, "ratio-to-1")
				}
			}
		})
	}
}
