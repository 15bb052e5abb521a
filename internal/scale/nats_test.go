package scale_test

import (
	"strings"
	"testing"

	"github.com/luling-edge/luling/cloud/natsbus"
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
