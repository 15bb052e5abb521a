package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/sunspec"
	"github.com/luling-edge/luling/gateway/bus"
)

// runScan probes unit addresses on a Modbus RTU bus and reports which
// answer, and for SunSpec devices which models they expose.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("scan", "-port PATH [-auto | -baud N -parity even] [-units 1-247] [-sunspec]", stderr)
	lf := addLineFlags(fs, 200*time.Millisecond, true)
	doSunSpec := fs.Bool("sunspec", false, "run SunSpec discovery on every unit that answers")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	pc, list, ok := lf.line("scan", fs, stderr)
	if !ok {
		return exitUsage
	}
	if pc, ok = lf.settle(ctx, "scan", pc, list, stdout, stderr); !ok {
		return exitFailed
	}
	b, closeBus, err := openBus(ctx, pc, *lf.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s scan: %v\n", programName, err)
		return exitFailed
	}
	defer closeBus()
	fmt.Fprintf(stdout, "scanning %s (%s), units %s, %v per unit\n", pc.Name, pc, *lf.units, *lf.timeout)
	sc := &scanner{b: b, stdout: stdout, sunspec: *doSunSpec}
	prog := newProgress(stderr, len(list))
	for _, u := range list {
		if ctx.Err() != nil {
			break
		}
		sc.probe(ctx, u)
		prog.done(sc.found)
	}
	fmt.Fprintf(stdout, "%d of %d units answered\n", sc.found, len(list))
	if sc.found > 0 {
		return exitOK
	}
	switch {
	case sc.garbled > 0 && sc.absent == 0:
		fmt.Fprintf(stdout, "every reply was garbled: the line settings are likely wrong; try the other -baud (9600, 19200, 38400, 115200) and -parity (none, even, odd) and -stop-bits the devices use\n")
	case sc.absent > 0:
		fmt.Fprintf(stdout, "no unit answered: a Modbus gateway on the line reports the scanned units absent behind it\n")
	default:
		fmt.Fprintf(stdout, "no unit answered: check the wiring (A/B), termination, the devices' power, -baud and -parity, and -units\n")
	}
	return exitFailed
}

// scanner probes units and counts what they did.
type scanner struct {
	b        *bus.Bus
	stdout   io.Writer
	sunspec  bool
	found    int   // units that answered (data or an exception of their own)
	answered []int // their addresses
	garbled  int   // replies that did not decode (CRC, framing)
	absent   int   // units a Modbus gateway reported absent (0x0A, 0x0B)
}

func (sc *scanner) probe(ctx context.Context, u int) {
	name := fmt.Sprintf("unit-%d", u)
	h := sc.b.Device(name)
	_, err := modbus.NewClient(h, byte(u), name).ReadHoldingRegisters(ctx, 0, 1)
	var ex *modbus.ExceptionError
	switch {
	case err == nil:
		fmt.Fprintf(sc.stdout, "unit %3d: answers (holding register 0 readable)\n", u)
	case modbus.IsGatewayAbsent(err) || errors.Is(err, drivers.ErrAbsent):
		// A TCP/RTU converter answers for a unit that is not behind it.
		sc.absent++
		if errors.As(err, &ex) {
			fmt.Fprintf(sc.stdout, "unit %3d: absent behind a Modbus gateway (exception %d)\n", u, ex.Code)
		}
		return
	case errors.As(err, &ex):
		fmt.Fprintf(sc.stdout, "unit %3d: answers (exception %d to FC03 at 0)\n", u, ex.Code)
	case errors.Is(err, drivers.ErrTimeout) || ctx.Err() != nil:
		return
	default:
		sc.garbled++
		fmt.Fprintf(sc.stdout, "unit %3d: garbled reply: %v\n", u, err)
		return
	}
	sc.found++
	sc.answered = append(sc.answered, u)
	if !sc.sunspec {
		return
	}
	info, err := sunspec.Scan(ctx, h, byte(u))
	if err != nil {
		fmt.Fprintf(sc.stdout, "          sunspec: %v\n", err)
		return
	}
	for _, line := range strings.Split(strings.TrimRight(info.String(), "\n"), "\n") {
		fmt.Fprintf(sc.stdout, "          %s\n", line)
	}
}

// progress reports a scan's progress and an estimate of the time left on
// stderr, every 2 s or every 25 units, whichever comes first: a full
// 1-247 scan at the default timeout takes most of a minute.
type progress struct {
	w           io.Writer
	what        string // what is counted: "units", "probes"
	total, n    int
	start, last time.Time
}

const (
	progressEvery = 2 * time.Second
	progressUnits = 25
)

func newProgress(w io.Writer, total int) *progress {
	now := time.Now()
	return &progress{w: w, what: "units", total: total, start: now, last: now}
}

// done counts one more unit scanned.
func (p *progress) done(found int) {
	p.n++
	now := time.Now()
	if p.n == p.total || (now.Sub(p.last) < progressEvery && p.n%progressUnits != 0) {
		return
	}
	p.last = now
	left := time.Duration(float64(now.Sub(p.start)) / float64(p.n) * float64(p.total-p.n)).Round(time.Second)
	fmt.Fprintf(p.w, "scanned %d of %d %s, %d answered, about %v left\n", p.n, p.total, p.what, found, left)
}

// unwrapOpenError names the OS's reason for a port that does not open:
// "open /dev/ttyUSB9: no such file or directory".
func unwrapOpenError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe
	}
	return err
}

// parseUnits reads "1-247" or "1,2,10-20".
func parseUnits(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a unit address", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("%q is not a range such as 1-247", part)
			}
		}
		if a < 1 || b > 247 || a > b {
			return nil, fmt.Errorf("%q: want addresses within 1..247, low to high", part)
		}
		for u := a; u <= b; u++ {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out, nil
}
