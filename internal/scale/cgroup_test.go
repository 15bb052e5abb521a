package scale

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A busy process in a group with a quota of 10% of a core gets about that
// much CPU, is counted as throttled, and the group is gone after Remove.
func TestCPUGroupHoldsQuota(t *testing.T) {
	g := testGroup(t, "luling-scale-test-", 0.1)
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	c0, t0 := processCPU(cmd.Process.Pid), time.Now()
	time.Sleep(2 * time.Second) // a measurement window
	used, over := processCPU(cmd.Process.Pid)-c0, time.Since(t0)
	stat, statErr := g.Stat()
	cmd.Process.Kill()
	cmd.Wait()
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Remove: %v", g.Path, err)
	}
	if share := used.Seconds() / over.Seconds(); share > 0.16 {
		t.Errorf("busy loop got %.0f%% of a core under a 10%% quota", share*100)
	}
	if statErr != nil {
		t.Fatal(statErr)
	}
	// A busy loop uses its 10 ms in every 100 ms period and is throttled in
	// (nearly) all of them.
	if stat.ThrottledTime <= 0 || stat.Periods < 10 || stat.ThrottledShare(CPUStat{}) < 0.8 {
		t.Errorf("cpu.stat %+v: want throttled time and most of at least 10 periods throttled", stat)
	}
}

// On a machine busier than its cores, a group still gets (nearly) its
// quota: 40 busy loops of default weight, each in its own session (its own
// autogroup), would leave a group of default weight 2/41 of the two cores,
// about 5%, less than its 10% quota.
func TestCPUGroupGetsQuotaWhenBusy(t *testing.T) {
	g := testGroup(t, "luling-scale-busy-", 0.1)
	t.Cleanup(func() { // after the busy loops ended (cleanups run last first)
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	busy := func() *exec.Cmd {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		// A session of its own: with autogroup scheduling the loops of one
		// session would share one weight.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	held := busy()
	if err := g.Add(held.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for range 20 * runtime.NumCPU() {
		busy()
	}
	c0, t0 := processCPU(held.Process.Pid), time.Now()
	time.Sleep(2 * time.Second) // a measurement window
	share := (processCPU(held.Process.Pid) - c0).Seconds() / time.Since(t0).Seconds()
	if share < 0.08 || share > 0.16 {
		t.Errorf("under a 10%% quota among %d busy loops the group got %.0f%% of a core, want about 10%%", 20*runtime.NumCPU(), share*100)
	}
}

func TestCPUGroupBadQuota(t *testing.T) {
	for _, q := range []float64{0, -1, 65} {
		if _, err := NewCPUGroup("x", q); err == nil {
			t.Errorf("quota %v: no error", q)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// testGroup makes a CPU group named prefix and the test's pid, skipping the
// test where cgroups are not available (failing it when
// LULING_REQUIRE_SERVICES is set).
func testGroup(t *testing.T, prefix string, quota float64) *CPUGroup {
	t.Helper()
	g, err := NewCPUGroup(prefix+itoa(os.Getpid()), quota)
	if errors.Is(err, ErrNoCgroup) || errors.Is(err, os.ErrPermission) {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatalf("cgroup: %v", err)
		}
		t.Skipf("cgroup: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}
