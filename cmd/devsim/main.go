// Command devsim runs device simulators on pseudo-terminals, for the demo,
// tests, benchmarks and bench-testing a gateway on site.
//
//	devsim parking --bays 64 --buses 2 --baud 19200 --seed 1 [--dir DIR]
//	    [--rate 1.5] [--stay 40m] [--speed 60] [--mix ultrasonic=0.5]
//	    [--inverters N] [--sign-plugin BIN --guidance-plugin BIN]
//	    [--doors N [--gpio-socket PATH] [--access-every 10s]]
//	    [--write-config FILE --site S --gateway G --broker URL]
//	devsim gpio -config FILE [-gpio-socket PATH]
//	devsim city -gateways N -devices M [-broker URL[,URL…]] [-duration D] [-json]
//
// The parking simulator creates one pty per RS-485 bus, each published
// under a stable link (DIR/ttyBUS0, DIR/ttyBUS1, ...), and puts Modbus RTU
// bay sensors on them (overhead ultrasonic and in-ground geomagnetic, unit
// addresses 1..n per bus). Cars arrive and leave at random, reproducibly
// from the seed; simulated time runs --speed times faster than the clock.
// devsim prints the ports, the unit ranges per bus and the buses and
// devices sections of a gateway config, and can write a whole gateway
// config. With --doors, each door gets an OSDP reader on a bus of their own
// (DIR/ttyDOOR) and its strike, contact and exit button on simulated GPIO
// lines served at a unix socket (gpio.simulator of the written config);
// visitors present granted and unknown cards, use the exit button, and now
// and then force or hold a door; DIR/credentials-sync.json is the
// credentials.sync command that grants the simulated cards. It logs every
// arrival and departure, and exits cleanly on SIGINT
// or SIGTERM. Bad flags print a message and exit with status 2.
//
// devsim gpio serves the GPIO lines of a gateway config at its
// gpio.simulator socket, logs what the gateway writes and drives inputs on
// commands read from standard input (LINE high|low, LINE pulse DURATION,
// levels).
//
// devsim city simulates a city of gateways from one process for load and
// scale tests of cloudd (internal/citysim): N gateways over N MQTT
// connections publish contract-correct batches, keep them until cloudd
// acknowledges them and answer its resend requests; at the end it prints
// what it sent (-json: with each gateway's last sequence number).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devsim:", err)
	}
	os.Exit(exitCode(err))
}

// version is set at build time (-X main.version=…, see the Makefile).
var version = "dev"

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}
