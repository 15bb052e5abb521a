package scale_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

// A small run through the whole harness: real cloudd under a CPU quota,
// Mosquitto, InfluxDB and a simulated city. It measures what it should,
// keeps up with a light load, and removes its cgroup afterwards.
func TestExecSmallCity(t *testing.T) {
	var res scale.Result
	t.Run("run", func(t *testing.T) {
		res = scale.Exec(t, scale.Run{
			Engine: scale.Mosquitto, Instances: 1, CPUQuota: 0.5,
			City:   citysim.Config{Gateways: 5, Devices: 20, BayChange: time.Second, Seed: 2},
			Warmup: time.Second, Measure: 3 * time.Second,
		})
	})
	if t.Failed() {
		return
	}
	t.Log(res)
	if res.Gateways != 5 || len(res.CloudCPU) != 1 || res.CloudCPU[0] <= 0 || res.CloudCPU[0] > 80 {
		t.Errorf("cloudd CPU %v: want one instance, above 0, within its 50%% quota", res.CloudCPU)
	}
	// 5 gateways × 20 bays changing every second: about 110 records/s.
	if res.Offered < 50 || res.Readings < 50 {
		t.Errorf("offered %.0f, written %.0f records/s: want about 110", res.Offered, res.Readings)
	}
	if !(res.P99 > 0 && res.P99 < 30) {
		t.Errorf("p99 %v s: want a latency from cloudd's histogram", res.P99)
	}
	if res.Lost != 0 || res.GapsOpen != 0 || len(res.Bound) == 0 {
		t.Errorf("one instance: lost %v, gaps open %v, bound %v", res.Lost, res.GapsOpen, res.Bound)
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup"} {
		if _, err := os.Stat(fmt.Sprintf("%s/luling-scale-%d-0", root, os.Getpid())); !os.IsNotExist(err) {
			t.Errorf("the run's cgroup is still there under %s: %v", root, err)
		}
	}
}
