package scale

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// Drain measures ingest throughput with the supply unlimited, for an
// engine that keeps messages while no cloudd runs (NATS JetStream): one
// cloudd without quota creates the engine's streams and stops; the city
// publishes for fill with no cloudd running, then stops; then r.Instances
// cloudd instances, each held to r.CPUQuota, drain the backlog. The rate
// is taken between 5% and 95% of what they wrote (start-up and tail
// left out), and so are the CPU figures and the bound.
//
// Why not a live run: with an offered load several times what one
// instance writes, the gateways' backlog grows, their acknowledgements
// stall, and they publish their unconfirmed tails again (Resent); the run
// then measures that storm and the simulator, not cloudd.
func Drain(tb testing.TB, r Run, fill time.Duration) Result {
	tb.Helper()
	if r.Instances < 1 {
		r.Instances = 1
	}
	st := newStage(tb, r)
	bin, influx, ep, token := st.bin, st.influx, st.ep, st.token
	args := func(i int) []string { return st.cloudArgs(i, r.Instances) }
	healthy := func(c *cloud) { waitHealthy(tb, c, 90*time.Second) }

	// Prime: the engine's streams exist before the city publishes.
	prime := startCloud(tb, bin, args(r.Instances), 0, "")
	healthy(prime)
	prime.cmd.Process.Signal(os.Interrupt)
	<-prime.done

	cfg := r.City
	cfg.Brokers = ep.GatewayURLs
	city, stopCity := st.startCity(tb, cfg)
	time.Sleep(fill) // the backlog's size is what fill publishes
	stopCity()
	sealed := city.Totals().Records

	var clouds []*cloud
	for i := 0; i < r.Instances; i++ {
		clouds = append(clouds, startCloud(tb, bin, args(i), r.CPUQuota, fmt.Sprintf("luling-scale-%d-%d", os.Getpid(), i)))
	}
	for _, c := range clouds {
		healthy(c)
	}
	influxPIDs := children("influxd")
	var snaps []snapshot
	deadline := time.Now().Add(r.Measure)
	for still := 0; still < 25 && time.Now().Before(deadline); {
		s := take(tb, city, clouds, token, ep.PIDs, influxPIDs, influx.URL)
		if n := len(snaps); n > 0 && written(s) == written(snaps[n-1]) && written(s) > 0 {
			still++
		} else {
			still = 0
		}
		snaps = append(snaps, s)
		time.Sleep(200 * time.Millisecond) // the sampling period of the drain curve
	}
	total := written(snaps[len(snaps)-1])
	if total < 0.5*float64(sealed) {
		tb.Fatalf("scale: the instances wrote %.0f of %d records sealed before %v ran out", total, sealed, r.Measure)
	}
	first := func(share float64) snapshot {
		for _, s := range snaps {
			if written(s) >= share*total {
				return s
			}
		}
		return snaps[len(snaps)-1]
	}
	start, end := first(0.05), first(0.95)
	if end.at.Sub(start.at) < time.Second {
		tb.Fatalf("scale: %.0f records drained in %v, too fast to measure: fill longer", total, end.at.Sub(start.at))
	}
	res := result(r, cfg, ep, start, end)
	res.Offered = float64(sealed) // the backlog, in records, not a rate
	res.KeptUp = false
	res.Bound = bounds(res, r.CPUQuota, len(ep.PIDs) > 0)
	return res
}

// written is the records all instances of a snapshot wrote.
func written(s snapshot) float64 {
	var n float64
	for _, in := range s.inst {
		n += in.records
	}
	return n
}
