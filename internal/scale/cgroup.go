package scale

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroup roots: version 1's cpu controller, and the unified (version 2)
// hierarchy.
var (
	cgroupV1CPU = "/sys/fs/cgroup/cpu"
	cgroupV2    = "/sys/fs/cgroup"
)

// ErrNoCgroup means neither a writable cgroup v1 cpu controller nor a
// cgroup v2 hierarchy with the cpu controller is available.
var ErrNoCgroup = errors.New("no writable cgroup cpu controller (cgroup v1 /sys/fs/cgroup/cpu or v2 cpu.max)")

// CPUGroup is a cgroup holding processes to a CPU quota.
type CPUGroup struct {
	Path  string
	V2    bool
	Quota float64 // cores
}

const cfsPeriodUS = 100000

// The group's weight against other work: ten times a plain process's
// (cgroup v1 cpu.shares 1024, v2 cpu.weight 100). A quota only caps a
// group; on a busy machine a group of default weight got less than its
// quota (three cloudd instances at 15% of a core got 9–12% each while other
// builds ran), and the run measured the machine. With the higher weight
// the scheduler gives the group its quota first, as far as the cores allow.
const (
	cpuSharesV1 = 10240
	cpuWeightV2 = 1000
)

// NewCPUGroup creates the cgroup name (under the cpu controller of cgroup
// v1, else under the v2 root) limited to quota cores (0.3 = 30% of one
// core), with ten times a process's weight so that it gets its quota on a
// busy machine. Remove it with Remove once its processes ended.
func NewCPUGroup(name string, quota float64) (*CPUGroup, error) {
	if quota <= 0 || quota > 64 {
		return nil, fmt.Errorf("cgroup %s: quota %v cores: want (0, 64]", name, quota)
	}
	quotaUS := int64(quota * cfsPeriodUS)
	if fi, err := os.Stat(filepath.Join(cgroupV1CPU, "cpu.cfs_quota_us")); err == nil && !fi.IsDir() {
		g := &CPUGroup{Path: filepath.Join(cgroupV1CPU, name), Quota: quota}
		if err := os.Mkdir(g.Path, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1 %s: %w", g.Path, err)
		}
		if err := g.write("cpu.cfs_period_us", strconv.Itoa(cfsPeriodUS)); err != nil {
			g.Remove()
			return nil, err
		}
		if err := g.write("cpu.cfs_quota_us", strconv.FormatInt(quotaUS, 10)); err != nil {
			g.Remove()
			return nil, err
		}
		if err := g.write("cpu.shares", strconv.Itoa(cpuSharesV1)); err != nil {
			g.Remove()
			return nil, err
		}
		return g, nil
	}
	ctl, err := os.ReadFile(filepath.Join(cgroupV2, "cgroup.controllers"))
	if err != nil || !strings.Contains(" "+string(ctl)+" ", " cpu ") {
		return nil, ErrNoCgroup
	}
	// The cpu controller must be enabled for the root's children.
	os.WriteFile(filepath.Join(cgroupV2, "cgroup.subtree_control"), []byte("+cpu"), 0o644)
	g := &CPUGroup{Path: filepath.Join(cgroupV2, name), V2: true, Quota: quota}
	if err := os.Mkdir(g.Path, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v2 %s: %w", g.Path, err)
	}
	if err := g.write("cpu.max", fmt.Sprintf("%d %d", quotaUS, cfsPeriodUS)); err != nil {
		g.Remove()
		return nil, err
	}
	if err := g.write("cpu.weight", strconv.Itoa(cpuWeightV2)); err != nil {
		g.Remove()
		return nil, err
	}
	return g, nil
}

func (g *CPUGroup) write(file, value string) error {
	p := filepath.Join(g.Path, file)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", value, p, err)
	}
	return nil
}

// Add moves process pid (all its threads) into the group.
func (g *CPUGroup) Add(pid int) error { return g.write("cgroup.procs", strconv.Itoa(pid)) }

// CPUStat is what a group's cpu.stat says about its quota so far: the
// enforcement periods (100 ms) in which its processes were runnable, how
// many of them ended with the quota used up, and the time they were held
// back. The throttled time is no share of the wall time: cgroup v1's
// throttled_time adds up every CPU's run queue (runs measured 116% of the
// window on two cores), so the harness uses the share of the periods.
type CPUStat struct {
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledTime    time.Duration
}

// ThrottledShare is the share of the periods in which the group ran that
// ended throttled, from an earlier reading to s (0 without periods).
func (s CPUStat) ThrottledShare(earlier CPUStat) float64 {
	if s.Periods <= earlier.Periods || s.ThrottledPeriods < earlier.ThrottledPeriods {
		return 0
	}
	return float64(s.ThrottledPeriods-earlier.ThrottledPeriods) / float64(s.Periods-earlier.Periods)
}

// Stat reads the group's cpu.stat.
func (g *CPUGroup) Stat() (CPUStat, error) {
	p := filepath.Join(g.Path, "cpu.stat")
	b, err := os.ReadFile(p)
	if err != nil {
		return CPUStat{}, fmt.Errorf("cgroup: %w", err)
	}
	st, err := parseCPUStat(b)
	if err != nil {
		return CPUStat{}, fmt.Errorf("cgroup %s: %w", p, err)
	}
	return st, nil
}

// parseCPUStat parses cpu.stat: v1 (nr_periods, nr_throttled,
// throttled_time in ns) or v2 (the same counts, throttled_usec).
func parseCPUStat(b []byte) (CPUStat, error) {
	var st CPUStat
	seen := 0
	for n, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		var dst *uint64
		var unit time.Duration
		switch k {
		case "nr_periods":
			dst = &st.Periods
		case "nr_throttled":
			dst = &st.ThrottledPeriods
		case "throttled_time":
			unit = time.Nanosecond
		case "throttled_usec":
			unit = time.Microsecond
		default:
			continue
		}
		x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return CPUStat{}, fmt.Errorf("cpu.stat line %d: %s %q: want a count", n+1, k, v)
		}
		seen++
		if dst != nil {
			*dst = x
		} else if x > uint64(math.MaxInt64/unit) {
			return CPUStat{}, fmt.Errorf("cpu.stat line %d: %s %d: too large", n+1, k, x)
		} else {
			st.ThrottledTime = time.Duration(x) * unit
		}
	}
	if seen < 3 {
		return CPUStat{}, fmt.Errorf("cpu.stat: want nr_periods, nr_throttled and throttled_time (v1) or throttled_usec (v2); found %d of them", seen)
	}
	if st.ThrottledPeriods > st.Periods {
		return CPUStat{}, fmt.Errorf("cpu.stat: nr_throttled %d above nr_periods %d", st.ThrottledPeriods, st.Periods)
	}
	return st, nil
}

// Remove deletes the group, retrying for a moment while the kernel still
// counts processes that just ended as members.
func (g *CPUGroup) Remove() error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(g.Path); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cgroup: remove %s: %w", g.Path, err)
}

// CgroupAvailable reports whether NewCPUGroup works here, by creating and
// removing a group.
func CgroupAvailable() error {
	g, err := NewCPUGroup(fmt.Sprintf("luling-scale-probe-%d", os.Getpid()), 1)
	if err != nil {
		return err
	}
	return g.Remove()
}
