package scale

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The throttled time cgroup v1 reports is summed over the CPUs: in the
// recorded lone instance at its quota it exceeds the window, while the
// share of throttled periods is 98%.
func TestRecordedThrottledTimeIsNoShare(t *testing.T) {
	rec := readRecording(t, "smoke-1-instance-quota.json")
	st, en := rec.Start.Inst[0].Quota, rec.End.Inst[0].Quota
	win := rec.End.At.Sub(rec.Start.At)
	if over := (en.ThrottledTime - st.ThrottledTime).Seconds() / win.Seconds(); over <= 1 {
		t.Errorf("throttled time %.2f of the window: the recording was to show it above 1", over)
	}
	if sh := rec.result().Throttled[0]; sh < 0.9 || sh > 1 {
		t.Errorf("throttled in %.2f of its periods, want 0.9 to 1", sh)
	}
}

func readRecording(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bounds", name))
	if err != nil {
		t.Fatal(err)
	}
	var rec recording
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rec
}

// Runs of benchmark b recorded with LULING_SCALE_RECORD (their snapshots
// at both ends of the window), replayed through result and bounds: each
// must be named what held it back, as the run's circumstances show.
func TestRecordedBounds(t *testing.T) {
	for name, c := range map[string]struct {
		want string
		why  string
	}{
		"smoke-1-instance-quota.json": {"cloudd-cpu",
			"one instance at 15% of a core used all of it, throttled in 98% of its periods, its two write slots busy 35% of the time"},
		"smoke-3-instances-quota.json": {"cloudd-cpu",
			"three instances at 15% each, 10-13% used but throttled in 81-85% of their periods; write slots a third busy, InfluxDB at 46% of a core"},
		"smoke-3-instances-influxd-held.json": {"influxdb-write-time",
			"influxd moved by hand into a cgroup of 8% of a core: three instances at 1% of their 50% quota, write slots 94-98% busy, 3.1 s per write in InfluxDB of 3.4 s in cloudd"},
		"run-r-1-instance.json": {"cloudd-cpu",
			"benchmark b at full size (run R): the lone instance used 13% of its 15%, throttled in 80% of its periods, write slots 40% busy"},
		"run-r-3-instances.json": {"cloudd-cpu",
			"run R's three instances (load average 13): 9-11% of their 15%, throttled in 64-70% of their periods, write slots 46-53% busy, 374 ms per write in InfluxDB of 469 in cloudd"},
		"run-s-1-instance-12pct.json": {"cloudd-cpu",
			"run S, quiet machine: the lone instance at 12% of a core used all of it, throttled in every period, write slots 16% busy"},
		"run-s-3-instances-12pct.json": {"cloudd-cpu",
			"run S's three instances at 12%: 9-11% used, throttled in 82-100% of their periods, write slots 23-28% busy, machine 62% busy"},
		"smoke-1-instance-half-core.json": {"unknown",
			"one instance at 50% of a core used 27%, throttled in 12% of its periods, slots 67% busy, InfluxDB 78% of a core, machine 89%: near several limits, none reached (a 2 s window)"},
	} {
		t.Run(name, func(t *testing.T) {
			res := readRecording(t, name).result()
			for i, sh := range res.Throttled {
				if sh < 0 || sh > 1 {
					t.Errorf("instance %d: throttled in %.2f of its periods: want a share", i, sh)
				}
			}
			if got := strings.Join(res.Bound, "+"); got != c.want {
				t.Errorf("bound %q, want %q (%s)\n%v", got, c.want, c.why, res)
			}
		})
	}
}
