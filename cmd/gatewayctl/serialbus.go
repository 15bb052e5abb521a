package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
)

// openBus opens the serial line through the gateway's bus arbiter (the
// code path gatewayd uses) and waits until the port is open. stop closes
// it. The error names the OS's reason when the port does not open (no such
// file, permission denied, busy).
func openBus(ctx context.Context, pc serialport.Config, timeout time.Duration) (b *bus.Bus, stop func(), err error) {
	// The bus reopens a port that fails; the first open error is the
	// OS's reason.
	openErr := make(chan error, 1)
	open := func(c serialport.Config) (serialport.Port, error) {
		p, err := serialport.Open(c)
		if err != nil {
			select {
			case openErr <- err:
			default:
			}
		}
		return p, err
	}
	b, err = bus.New(bus.Config{Name: programName, Port: pc, Timeout: timeout, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond},
		bus.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Open: open})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Run(ctx) }()
	stop = func() { cancel(); wg.Wait() }
	select {
	case <-b.Ready():
		return b, stop, nil
	case err := <-openErr:
		stop()
		return nil, nil, unwrapOpenError(err)
	case <-time.After(3 * time.Second):
		stop()
		return nil, nil, fmt.Errorf("cannot open %s: %s", pc.Name, b.Stats().State)
	}
}

// lineFlags are the flags of the commands that open a bus: the port and
// its settings, and for the scanning ones the units and -auto.
type lineFlags struct {
	port, parity, units *string
	baud, stop          *int
	timeout             *time.Duration
	auto                *bool
}

// addLineFlags registers -port, -baud, -parity, -stop-bits and -timeout;
// with scanning also -units and -auto.
func addLineFlags(fs *flag.FlagSet, timeout time.Duration, scanning bool) *lineFlags {
	f := &lineFlags{
		port:    fs.String("port", "", "serial port, e.g. /dev/ttyUSB0 (required)"),
		baud:    fs.Int("baud", 19200, "line speed"),
		parity:  fs.String("parity", "even", "none, even or odd"),
		stop:    fs.Int("stop-bits", 1, "1 or 2"),
		timeout: fs.Duration("timeout", timeout, "reply timeout per transaction"),
	}
	if scanning {
		f.units = fs.String("units", "1-247", "unit addresses to probe: 1-247, or a list such as 1,2,10-20")
		f.auto = fs.Bool("auto", false, "find the line settings first: try 19200/9600/38400/115200 baud with even, no and odd parity (the usual ones first) until a unit answers, then use them (-baud and -parity are ignored)")
	}
	return f
}

// line checks the flags (after Parse) and returns the port's settings and,
// for the scanning commands, the units; ok is false after a usage error
// was printed.
func (f *lineFlags) line(cmd string, fs *flag.FlagSet, stderr io.Writer) (pc serialport.Config, units []int, ok bool) {
	if *f.port == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s %s: -port is required; it takes no arguments\n", programName, cmd)
		return pc, nil, false
	}
	if f.units != nil {
		var err error
		if units, err = parseUnits(*f.units); err != nil {
			fmt.Fprintf(stderr, "%s %s: -units %q: %v\n", programName, cmd, *f.units, err)
			return pc, nil, false
		}
	}
	pc = serialport.Config{Name: *f.port, Baud: *f.baud, Parity: serialport.Parity(*f.parity), StopBits: *f.stop}
	if err := pc.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", programName, cmd, err)
		return pc, nil, false
	}
	return pc, units, true
}

// settle runs -auto when it was given: it finds the line settings and says
// which to use on out; pc is returned unchanged without -auto. ok is false
// when nothing answered at any setting (said on out) or the port failed.
func (f *lineFlags) settle(ctx context.Context, cmd string, pc serialport.Config, units []int, out, stderr io.Writer) (serialport.Config, bool) {
	if f.auto == nil || !*f.auto {
		return pc, true
	}
	found, ok, err := findLine(ctx, pc.Name, units, *f.timeout, out, stderr)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "%s %s: %v\n", programName, cmd, err)
		return pc, false
	case !ok:
		fmt.Fprintf(out, "no unit answered at any of %d line settings: check the wiring (A/B), termination, the devices' power and -units\n", len(autoLines))
		return pc, false
	}
	fmt.Fprintf(out, "line settings: %s (use -baud %d -parity %s)\n", found, found.Baud, found.Parity)
	return found, true
}
