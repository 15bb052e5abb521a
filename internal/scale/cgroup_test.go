package scale

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A busy process in a group with a quota of 10% of a core gets about that
// much CPU, is counted as throttled, and the group is gone after Remove.
func TestCPUGroupHoldsQuota(t *testing.T) {
	g, err := NewCPUGroup("luling-scale-test-"+itoa(os.Getpid()), 0.1)
	if errors.Is(err, ErrNoCgroup) || errors.Is(err, os.ErrPermission) {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatalf("cgroup: %v", err)
		}
		t.Skipf("cgroup: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
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
	throttled := g.Throttled()
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
	if throttled <= 0 {
		t.Error("no throttled time under the quota")
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
