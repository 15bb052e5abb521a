package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/gateway/serialport"
)

// autoLines are the line settings scan -auto tries, the usual ones first:
// 19200 8E1 is the Modbus serial-line default, 9600 the commonest factory
// setting; many meters ship 8N1; odd parity is rare.
var autoLines = []struct {
	baud   int
	parity serialport.Parity
}{
	{19200, serialport.ParityEven}, {9600, serialport.ParityEven},
	{9600, serialport.ParityNone}, {19200, serialport.ParityNone},
	{38400, serialport.ParityEven}, {115200, serialport.ParityNone},
	{38400, serialport.ParityNone}, {115200, serialport.ParityEven},
	{9600, serialport.ParityOdd}, {19200, serialport.ParityOdd},
	{38400, serialport.ParityOdd}, {115200, serialport.ParityOdd},
}

// findLine tries each of autoLines on the port: on each it probes the
// units until one answers with a valid frame (data, or an exception of
// its own), and returns the first setting where one did. ok is false when
// none answered on any setting.
func findLine(ctx context.Context, port string, units []int, timeout time.Duration, stdout, stderr io.Writer) (pc serialport.Config, ok bool, err error) {
	prog := newProgress(stderr, len(autoLines)*len(units))
	prog.what = "probes"
	for i, l := range autoLines {
		pc = serialport.Config{Name: port, Baud: l.baud, Parity: l.parity, StopBits: 1}
		b, closeBus, err := openBus(ctx, pc, timeout)
		if err != nil {
			return pc, false, err
		}
		answered := 0
		garbled := 0
		for _, u := range units {
			if ctx.Err() != nil {
				break
			}
			name := fmt.Sprintf("unit-%d", u)
			_, err := modbus.NewClient(b.Device(name), byte(u), name).ReadHoldingRegisters(ctx, 0, 1)
			var ex *modbus.ExceptionError
			switch {
			case err == nil, errors.As(err, &ex) && !modbus.IsGatewayAbsent(err):
				answered = u
			case errors.Is(err, drivers.ErrTimeout), modbus.IsGatewayAbsent(err), errors.Is(err, drivers.ErrAbsent):
			default:
				garbled++
			}
			prog.done(0)
			if answered != 0 {
				break
			}
		}
		closeBus()
		if answered != 0 {
			fmt.Fprintf(stdout, "auto: %s: unit %d answered\n", pc, answered)
			return pc, true, nil
		}
		if garbled > 0 {
			fmt.Fprintf(stdout, "auto: %s: %d garbled replies, no valid one\n", pc, garbled)
		} else {
			fmt.Fprintf(stdout, "auto: %s: no answer\n", pc)
		}
		prog.n = (i + 1) * len(units) // none left on this setting
		if ctx.Err() != nil {
			return pc, false, ctx.Err()
		}
	}
	return pc, false, nil
}
