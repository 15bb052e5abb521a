package scale_test

import (
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/natsbus"
	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

// The gateways of benchmark (b) fill every partition equally, so 1 and 3
// instances (partition p on instance p mod count) carry equal shares;
// they are distinct default ids in order.
func TestEvenGateways(t *testing.T) {
	for _, c := range []struct {
		site    string
		n, part int
	}{{"city", 240, 12}, {"city", 12, 12}, {"other", 96, 24}} {
		ids, err := scale.EvenGateways(c.site, c.n, c.part)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != c.n {
			t.Fatalf("%d ids, want %d", len(ids), c.n)
		}
		perPart := make([]int, c.part)
		perInst := make([]int, 3)
		seen := map[string]bool{}
		for i, id := range ids {
			if seen[id] || (i > 0 && id <= ids[i-1]) {
				t.Fatalf("id %d %q repeated or out of order", i, id)
			}
			seen[id] = true
			p := natsbus.Partition(c.site, id, c.part)
			perPart[p]++
			perInst[p%3]++
		}
		for p, k := range perPart {
			if k != c.n/c.part {
				t.Errorf("%s, %d over %d: partition %d has %d gateways, want %d", c.site, c.n, c.part, p, k, c.n/c.part)
			}
		}
		for i, k := range perInst {
			if k != c.n/3 {
				t.Errorf("%s, %d over %d: instance %d of 3 has %d gateways, want %d", c.site, c.n, c.part, i, k, c.n/3)
			}
		}
	}
	for _, bad := range [][2]int{{250, 12}, {0, 12}, {12, 0}} {
		if _, err := scale.EvenGateways("city", bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "want a positive multiple") {
			t.Errorf("%d gateways over %d partitions: %v, want an error", bad[0], bad[1], err)
		}
	}
}

// A drain of three instances on NATS: they settle before the backlog
// reaches them (each holds 4 of the 12 partitions when the window opens,
// none moves during it), and each writes a third of the backlog, within
// the traffic's chance variation (the even gateways carry equal load, not
// equal records). The whole backlog is written after the release (an
// engine that did not hold it back would have delivered most of it while
// the city filled it).
func TestDrainEvenShares(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster, InfluxDB and three cloudd; not with -short")
	}
	quota := 0.1 // slow enough for a backlog that drains in seconds, not in one
	if err := scale.CgroupAvailable(); err != nil {
		t.Logf("running without a CPU quota: %v", err)
		quota = 0
	}
	res := scale.Drain(t, scale.Run{
		Engine: scale.NATS, Instances: 3, CPUQuota: quota,
		City:    citysim.Config{Site: "even", Gateways: 12, Devices: 1000, BayChange: time.Second, Seed: 4},
		Measure: 2 * time.Minute,
	}, 8*time.Second)
	t.Log(res)
	if res.Gateways != 12 || res.Moves != 0 {
		t.Errorf("%d gateways, %d partition moves during the window: want 12 and none", res.Gateways, res.Moves)
	}
	var sum float64
	for i, n := range res.InstDrained {
		if res.InstPartitions[i] != 4 {
			t.Errorf("instance %d held %.0f partitions when the window opened, want 4", i, res.InstPartitions[i])
		}
		sum += n
	}
	if len(res.InstDrained) != 3 || sum < 0.95*res.Offered {
		t.Fatalf("drained %v (%.0f) of %.0f records: want three instances writing the backlog", res.InstDrained, sum, res.Offered)
	}
	for i, n := range res.InstDrained {
		if share := n / sum; share < 0.3 || share > 0.37 {
			t.Errorf("instance %d wrote %.0f of %.0f records (%.1f%%), want a third", i, n, sum, 100*share)
		}
	}
}
