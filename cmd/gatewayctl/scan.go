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
	"github.com/luling-edge/luling/gateway/serialport"
)

// runScan probes unit addresses on a Modbus RTU bus and reports which
// answer, and for SunSpec devices which models they expose.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("scan", "-port PATH [-auto | -baud N -parity even] [-units 1-247] [-sunspec]", stderr)
	port := fs.String("port", "", "serial port, e.g. /dev/ttyUSB0 (required)")
	baud := fs.Int("baud", 19200, "line speed")
	parity := fs.String("parity", "even", "none, even or odd")
	stop := fs.Int("stop-bits", 1, "1 or 2")
	units := fs.String("units", "1-247", "unit addresses to probe: 1-247, or a list such as 1,2,10-20")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "reply timeout per unit")
	doSunSpec := fs.Bool("sunspec", false, "run SunSpec discovery on every unit that answers")
	auto := fs.Bool("auto", false, "find the line settings first: try 19200/9600/38400/115200 baud with even, no and odd parity (the usual ones first) until a unit answers, then scan with them (-baud and -parity are ignored)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *port == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s scan: -port is required and takes no arguments\n", programName)
		return exitUsage
	}
	list, err := parseUnits(*units)
	if err != nil {
		fmt.Fprintf(stderr, "%s scan: -units %q: %v\n", programName, *units, err)
		return exitUsage
	}
	pc := serialport.Config{Name: *port, Baud: *baud, Parity: serialport.Parity(*parity), StopBits: *stop}
	if err := pc.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s scan: %v\n", programName, err)
		return exitUsage
	}
	if *auto {
		found, ok, err := findLine(ctx, *port, list, *timeout, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s scan: %v\n", programName, err)
			return exitFailed
		}
		if !ok {
			fmt.Fprintf(stdout, "no unit answered at any of %d line settings: check the wiring (A/B), termination, the devices' power and -units\n", len(autoLines))
			return exitFailed
		}
		pc = found
		fmt.Fprintf(stdout, "line settings: %s (use -baud %d -parity %s)\n", pc, pc.Baud, pc.Parity)
	}
	b, closeBus, err := openBus(ctx, pc, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s scan: %v\n", programName, err)
		return exitFailed
	}
	defer closeBus()
	fmt.Fprintf(stdout, "scanning %s (%s), units %s, %v per unit\n", *port, pc, *units, *timeout)
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
