package scale_test

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/scale"
)

// A small run through the whole harness: real cloudd under a CPU quota,
// Mosquitto, InfluxDB and a simulated city. It measures what it should,
// drained afterwards every record is in InfluxDB, and its cgroup is gone.
func TestExecSmallCity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Mosquitto, InfluxDB and cloudd; not with -short")
	}
	quota := 0.5
	if err := scale.CgroupAvailable(); err != nil {
		t.Logf("running without a CPU quota: %v", err)
		quota = 0
	}
	var (
		res    scale.Result
		rep    citysim.Report
		landed map[string]uint64
	)
	t.Run("run", func(t *testing.T) {
		res = scale.Exec(t, scale.Run{
			Engine: scale.Mosquitto, Instances: 1, CPUQuota: quota,
			City:   citysim.Config{Gateways: 5, Devices: 20, BayChange: time.Second, Seed: 2},
			Warmup: time.Second, Measure: 3 * time.Second,
			After: func(t testing.TB, r *scale.Running) {
				rep = r.Drain(t, 2*time.Minute)
				landed = map[string]uint64{}
				for m, field := range map[string]string{"parking_bay": "occupied", "access": "credential", "pv": "ac_power_w"} {
					s, err := r.Influx.Query(r.DB, fmt.Sprintf(`SELECT count(%q) FROM %q`, field, m))
					if err != nil {
						t.Fatal(err)
					}
					if len(s) > 0 && len(s[0].Values) > 0 {
						n, _ := s[0].Values[0][1].(json.Number).Int64()
						landed[m] = uint64(n)
					}
				}
			},
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
	// After the run, drained: every record sent is in InfluxDB once.
	for m, n := range rep.ByMeasurement {
		if landed[m] != n {
			t.Errorf("%s: %d points in InfluxDB, the simulator sent %d records", m, landed[m], n)
		}
	}
	if len(rep.ByMeasurement) != 3 {
		t.Errorf("records by measurement %v: want parking_bay, access and pv", rep.ByMeasurement)
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup"} {
		if _, err := os.Stat(fmt.Sprintf("%s/luling-scale-%d-0", root, os.Getpid())); !os.IsNotExist(err) {
			t.Errorf("the run's cgroup is still there under %s: %v", root, err)
		}
	}
}

// Killing one of two instances in the middle of a run: the run reports
// the survivor only.
func TestExecKillOneOfTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Mosquitto, InfluxDB and cloudd; not with -short")
	}
	res := scale.Exec(t, scale.Run{
		Engine: scale.Mosquitto, Instances: 2,
		City:   citysim.Config{Site: "kill", Gateways: 4, Devices: 200, BayChange: time.Second, Seed: 3},
		Warmup: time.Second, Measure: 3 * time.Second,
		During: func(t testing.TB, r *scale.Running) {
			pid := r.PID(1)
			r.Kill(1)
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("instance 1 (pid %d) still runs after Kill", pid)
			}
		},
	})
	t.Log(res)
	if len(res.CloudCPU) != 2 || res.CloudCPU[1] != 0 || res.CloudCPU[0] <= 0 || res.Readings <= 0 {
		t.Errorf("cloudd CPU %v, written %.0f/s: want the survivor's figures only", res.CloudCPU, res.Readings)
	}
}
