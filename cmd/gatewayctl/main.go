// Command gatewayctl is the installer's and integrator's tool for Luling
// gateways. Each task is a subcommand:
//
//	gatewayctl validate FILE...   check gateway config files
//	gatewayctl scan -port PATH    probe a Modbus RTU bus for devices
//	gatewayctl read -port PATH -unit N -profile NAME   read one device once
//	gatewayctl init -port PATH -o FILE   write a starting config from a scan
//	gatewayctl schema             print the config's JSON Schema
//	gatewayctl lots               parking occupancy per lot and zone
//	gatewayctl plugin new NAME    scaffold a device plugin project (-rule: a rule plugin)
//
// Exit status: 0 on success, 1 when the task found problems (an invalid
// config), 2 on usage errors.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	programName = "gatewayctl"
)

// version is set at build time (-X main.version=…, see the Makefile).
var version = "dev"

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands, in the order usage prints them.
func commands() []command {
	return []command{
		{name: "validate", summary: "check gateway config files and print every mistake", run: runValidate},
		{name: "plugin", summary: "scaffold a device or rule plugin project (plugin new NAME [-rule])", run: runPlugin},
		{name: "scan", summary: "probe a Modbus RTU bus for devices (and their SunSpec models)", run: runScan},
		{name: "read", summary: "read one Modbus device once through a profile and print the values", run: runRead},
		{name: "init", summary: "scan a bus and write a commented starting config from what answered", run: runInit},
		{name: "schema", summary: "print the config's JSON Schema, for editors (schema > gateway.schema.json)", run: runSchema},
		{name: "lots", summary: "show parking occupancy per lot and zone from InfluxDB", run: runLots},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, programName, version)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n", programName, args[0])
	usage(stderr)
	return exitUsage
}

// flagSet makes a subcommand's flag set: errors go to stderr, and -h
// prints "usage: gatewayctl NAME ARGS" and the flags.
func flagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(programName+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s %s %s\n\n", programName, name, args)
		fs.PrintDefaults()
	}
	return fs
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [ARGS]\n\ncommands:\n", programName)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "print the version (also -version, --version)")
	fmt.Fprintf(w, "\nRun %s COMMAND -h for a command's flags.\n", programName)
}
