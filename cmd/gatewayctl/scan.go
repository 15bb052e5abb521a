package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
	fs := flagSet("scan", "-port PATH [-baud N] [-parity even] [-units 1-247] [-sunspec]", stderr)
	port := fs.String("port", "", "serial port, e.g. /dev/ttyUSB0 (required)")
	baud := fs.Int("baud", 19200, "line speed")
	parity := fs.String("parity", "even", "none, even or odd")
	stop := fs.Int("stop-bits", 1, "1 or 2")
	units := fs.String("units", "1-247", "unit addresses to probe: 1-247, or a list such as 1,2,10-20")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "reply timeout per unit")
	doSunSpec := fs.Bool("sunspec", false, "run SunSpec discovery on every unit that answers")
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
	b, err := bus.New(bus.Config{Name: "scan", Port: pc, Timeout: *timeout, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond},
		bus.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintf(stderr, "%s scan: %v\n", programName, err)
		return exitUsage
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	// Wait for the port to open, or report why it does not.
	select {
	case <-b.Ready():
	case <-time.After(3 * time.Second):
		fmt.Fprintf(stderr, "%s scan: cannot open %s: %s\n", programName, *port, b.Stats().State)
		return exitFailed
	}
	fmt.Fprintf(stdout, "scanning %s (%s), units %s, %v per unit\n", *port, pc, *units, *timeout)
	found := 0
	for _, u := range list {
		if ctx.Err() != nil {
			break
		}
		h := b.Device(fmt.Sprintf("unit-%d", u))
		c := modbus.NewClient(h, byte(u), fmt.Sprintf("unit-%d", u))
		_, err := c.ReadHoldingRegisters(ctx, 0, 1)
		var ex *modbus.ExceptionError
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "unit %3d: answers (holding register 0 readable)\n", u)
		case errors.As(err, &ex):
			fmt.Fprintf(stdout, "unit %3d: answers (exception %d to FC03 at 0)\n", u, ex.Code)
		case errors.Is(err, drivers.ErrTimeout):
			continue
		default:
			fmt.Fprintf(stdout, "unit %3d: garbled reply: %v\n", u, err)
			continue
		}
		found++
		if *doSunSpec {
			info, err := sunspec.Scan(ctx, h, byte(u))
			if err != nil {
				fmt.Fprintf(stdout, "          sunspec: %v\n", err)
			} else {
				for _, line := range strings.Split(strings.TrimRight(info.String(), "\n"), "\n") {
					fmt.Fprintf(stdout, "          %s\n", line)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "%d of %d units answered\n", found, len(list))
	return exitOK
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
