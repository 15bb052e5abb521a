package scale

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Luling runs on.
const clockTick = 10 * time.Millisecond

// maxTicks keeps a CPU time in a time.Duration (over 10 years of CPU).
const maxTicks = 1 << 35

// procStat is what /proc/PID/stat says about a process.
type procStat struct {
	Comm string
	PPid int
	CPU  time.Duration // utime + stime
}

// parseProcStat parses one /proc/PID/stat line. The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("proc stat: no (comm) in %q", clip(b))
	}
	f := strings.Fields(string(b[end+1:]))
	// After comm: state(3) ppid(4) … utime(14) stime(15).
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("proc stat: %d fields after comm, want at least 13", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("proc stat: ppid %q, utime %q, stime %q: want integers", f[1], f[11], f[12])
	}
	if ut > maxTicks || st > maxTicks {
		return procStat{}, fmt.Errorf("proc stat: utime %d, stime %d: want at most %d clock ticks each", ut, st, uint64(maxTicks))
	}
	return procStat{Comm: string(b[open+1 : end]), PPid: ppid, CPU: time.Duration(ut+st) * clockTick}, nil
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// readProcStat reads /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

// processCPU returns the CPU time process pid used so far (0 when it is
// gone).
func processCPU(pid int) time.Duration {
	s, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return s.CPU
}

// children returns the pids of this process's children named comm (the
// services testenv started: mosquitto, influxd).
func children(comm string) []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readProcStat(pid); err == nil && s.PPid == self && s.Comm == comm {
			out = append(out, pid)
		}
	}
	return out
}

// machineCPU returns the busy and total CPU time of the whole machine, all
// cores (the first line of /proc/stat).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var idle uint64
	for i, s := range f[1:] {
		n, _ := strconv.ParseUint(s, 10, 64)
		total += time.Duration(n) * clockTick
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - time.Duration(idle)*clockTick, total
}

// loadAverage returns the machine's 1-minute load average (/proc/loadavg),
// 0 when unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
