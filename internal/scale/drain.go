package scale

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
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
	bin := clouddBinary(tb)
	influx, db := testenv.NewDatabase(tb)
	ep := r.Engine.Start(tb)
	tokens := filepath.Join(tb.TempDir(), "tokens.json")
	out, err := exec.Command(bin, "token", "create", "-tokens", tokens, "-name", "scale", "-role", "viewer").Output()
	if err != nil {
		tb.Fatalf("scale: cloudd token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	args := func(i int) []string {
		return append(ep.CloudArgs(i, r.Instances), "-influx-url", influx.URL, "-influx-bucket", db, "-tokens", tokens, "-log-level", "warn")
	}
	healthy := func(c *cloud) {
		testenv.WaitFor(tb, 90*time.Second, "cloudd "+c.http+" connected", func() bool {
			resp, err := http.Get("http://" + c.http + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	// Prime: the engine's streams exist before the city publishes.
	prime := startCloud(tb, bin, args(r.Instances), 0, "")
	healthy(prime)
	prime.cmd.Process.Signal(os.Interrupt)
	<-prime.done

	cfg := r.City
	cfg.Brokers = ep.GatewayURLs
	city, err := citysim.New(cfg)
	if err != nil {
		tb.Fatalf("scale: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- city.Run(ctx) }()
	testenv.WaitFor(tb, time.Minute+time.Duration(cfg.Gateways)*100*time.Millisecond, "every gateway online", func() bool {
		return city.Totals().Online == cfg.Gateways
	})
	time.Sleep(fill) // the backlog's size is what fill publishes
	cancel()
	<-done
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
