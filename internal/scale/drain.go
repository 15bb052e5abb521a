package scale

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/natsbus"
	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
)

// Drain measures ingest throughput with the supply unlimited, for an
// engine that can hold messages back from running instances
// (Endpoint.Hold: NATS JetStream). The r.Instances cloudd instances, each
// held to r.CPUQuota, start first and settle: every instance holds its
// share of the partitions (P/count, from their /metrics), so no partition
// changes hands while they drain (checked again before the release; the
// partitions that move during the window anyway are counted in
// Result.Moves and named as a bound). Then the engine holds delivery back, the
// city publishes for fill and stops, and the engine releases the backlog
// to all instances at once. Unless r.City.IDs names them, the city's
// gateways are chosen to spread evenly over the partitions (EvenGateways;
// their number rounded up to a multiple of the partitions), so that each
// instance carries an equal share. The rate is taken between 5% and 95% of what
// they wrote (start-up and tail left out), and so are the CPU figures,
// each instance's share and the bound.
//
// Why not a live run: with an offered load several times what one
// instance writes, the gateways' backlog grows, their acknowledgements
// stall, and they publish their unconfirmed tails again (Resent); the run
// then measures that storm and the simulator, not cloudd. Why settle
// first: an instance that starts alone takes every partition and pulls
// as much as its queue holds (4,096 messages: most of a backlog) before
// the others join; it hands partitions over only after writing what it
// took, so the others idle while it works through the backlog at its
// quota.
func Drain(tb testing.TB, r Run, fill time.Duration) Result {
	tb.Helper()
	if r.Instances < 1 {
		r.Instances = 1
	}
	st := newStage(tb, r)
	bin, influx, ep, token := st.bin, st.influx, st.ep, st.token
	if ep.Hold == nil {
		tb.Fatalf("scale: engine %s cannot hold messages back, which Drain needs", r.Engine.Name)
	}
	var clouds []*cloud
	for i := 0; i < r.Instances; i++ {
		clouds = append(clouds, startCloud(tb, bin, st.cloudArgs(i, r.Instances), r.CPUQuota, fmt.Sprintf("luling-scale-%d-%d", os.Getpid(), i)))
	}
	for _, c := range clouds {
		waitHealthy(tb, c, 90*time.Second)
	}
	parts := flagInt(st.cloudArgs(0, r.Instances), "nats-partitions", natsbus.DefaultPartitions)
	waitSettled(tb, clouds, token, parts)
	release := ep.Hold(tb)

	cfg := r.City
	cfg.Brokers = ep.GatewayURLs
	if len(cfg.IDs) == 0 {
		cfg = evenCity(tb, cfg, parts)
	}
	city, stopCity := st.startCity(tb, cfg)
	time.Sleep(fill) // the backlog's size is what fill publishes
	stopCity()
	sealed := city.Totals().Records
	// Again: connecting the city sets up two replicated consumers per
	// gateway in the cluster, and on a busy machine the instances' lease
	// renewals can time out meanwhile and their partitions move.
	waitSettled(tb, clouds, token, parts)

	influxPIDs := []int{influx.PID()}
	snaps := []snapshot{take(tb, city, clouds, token, ep.PIDs, influxPIDs, influx.URL)}
	release()
	deadline := time.Now().Add(r.Measure)
	for still := 0; still < 25 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond) // the sampling period of the drain curve
		s := take(tb, city, clouds, token, ep.PIDs, influxPIDs, influx.URL)
		if n := len(snaps); written(s) == written(snaps[n-1]) && written(s) > written(snaps[0]) {
			still++
		} else {
			still = 0
		}
		snaps = append(snaps, s)
	}
	base := written(snaps[0])
	total := written(snaps[len(snaps)-1]) - base
	if total < 0.5*float64(sealed) {
		tb.Fatalf("scale: the instances wrote %.0f of %d records sealed before %v ran out", total, sealed, r.Measure)
	}
	first := func(share float64) snapshot {
		for _, s := range snaps {
			if written(s)-base >= share*total {
				return s
			}
		}
		return snaps[len(snaps)-1]
	}
	start, end := first(0.05), first(0.95)
	if end.At.Sub(start.At) < time.Second {
		tb.Fatalf("scale: %.0f records drained in %v, too fast to measure: fill longer", total, end.At.Sub(start.At))
	}
	for i, in := range end.Inst {
		if in.Moves != start.Inst[i].Moves {
			tb.Logf("scale: instance %d held %.0f partitions at the start of the window and %.0f at its end, after %.0f moves: partitions changed hands during the drain", i, start.Inst[i].Owned, in.Owned, in.Moves-start.Inst[i].Moves)
		}
	}
	rec := newRecording(r, cfg, ep, start, end)
	rec.Drain, rec.Backlog = true, float64(sealed)
	rec.InstQueued = meanQueued(snaps, start.At, end.At)
	rec.keep(tb)
	res := rec.result()
	last := snaps[len(snaps)-1]
	for i, in := range last.Inst {
		res.InstDrained = append(res.InstDrained, in.Records-snaps[0].Inst[i].Records)
		res.InstPartitions = append(res.InstPartitions, start.Inst[i].Owned)
	}
	return res
}

// evenCity names cfg's gateways so that they spread evenly over the
// partitions (EvenGateways), their number rounded up to a multiple of the
// partitions.
func evenCity(tb testing.TB, cfg citysim.Config, parts int) citysim.Config {
	tb.Helper()
	site := cfg.Site
	if site == "" {
		site = citysim.DefaultSite
	}
	n := (max(cfg.Gateways, 1) + parts - 1) / parts * parts
	ids, err := EvenGateways(site, n, parts)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.IDs, cfg.Gateways = ids, n
	return cfg
}

// waitSettled waits until the instances hold parts partitions between
// them, each its share (parts/count, or one more), none of them moving.
func waitSettled(tb testing.TB, clouds []*cloud, token string, parts int) {
	tb.Helper()
	n := len(clouds)
	testenv.WaitFor(tb, 2*time.Minute, fmt.Sprintf("%d partitions settled over %d instances", parts, n), func() bool {
		var sum float64
		for _, c := range clouds {
			m, err := c.metrics(token)
			if err != nil {
				return false
			}
			o := m.Sum("luling_cloud_nats_partitions_owned")
			sum += o
			if o < float64(parts/n) || o > float64((parts+n-1)/n) {
				return false
			}
		}
		return sum == float64(parts)
	})
}

// meanQueued is each instance's mean ingest queue over the snapshots
// from from to to.
func meanQueued(snaps []snapshot, from, to time.Time) []float64 {
	var sum []float64
	n := 0
	for _, s := range snaps {
		if s.At.Before(from) || s.At.After(to) {
			continue
		}
		if sum == nil {
			sum = make([]float64, len(s.Inst))
		}
		for i, in := range s.Inst {
			sum[i] += in.Queued
		}
		n++
	}
	for i := range sum {
		sum[i] /= float64(n)
	}
	return sum
}

// written is the records all instances of a snapshot wrote.
func written(s snapshot) float64 {
	var n float64
	for _, in := range s.Inst {
		n += in.Records
	}
	return n
}
