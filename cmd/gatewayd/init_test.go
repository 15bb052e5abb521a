package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// gatewayd's own packages build little at init: what a gateway needs is
// made when it is used (the naming rules compare bytes instead of holding
// a dozen compiled regexps; yaml error patterns and {n} placeholders are
// compiled on first use). The packages' init allocated about 420 KiB
// before, most of it live for the process's lifetime. The test binary
// links the same packages as gatewayd; GODEBUG=inittrace=1 reports each
// package's init.
func TestInitAllocatesLittle(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	line := regexp.MustCompile(`(?m)^init (github\.com/luling-edge/luling/\S+) @.* ([0-9]+) bytes, ([0-9]+) allocs$`)
	var total int
	seen := 0
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		seen++
		n, _ := strconv.Atoi(m[2])
		total += n
		if n > 16<<10 {
			t.Errorf("init of %s allocates %d bytes, want at most 16 KiB", m[1], n)
		}
	}
	if seen < 5 {
		t.Fatalf("inittrace reported %d of the project's packages:\n%s", seen, out)
	}
	if total > 48<<10 {
		t.Errorf("the project's packages allocate %d bytes at init, want at most 48 KiB", total)
	}
}
