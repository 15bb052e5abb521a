package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/luling-edge/luling/drivers/all" // registers every built-in driver
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/internal/cliflag"
)

// runValidate checks each config file, printing every mistake (one per
// line) or a one-line summary for a valid file.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet(programName+" validate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	skipFiles := fl.Bool("skip-files", false, "do not check that files the config names exist (for checking a config away from its gateway)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s validate [-skip-files] FILE...\n\n"+
			"Checks gateway config files. Prints every mistake as FILE:LINE:COL: key: message (hint),\n"+
			"or a summary line for a valid file. Exit status 1 when any file has mistakes.\n\nflags:\n", programName)
		fl.PrintDefaults()
	}
	files, err := cliflag.ParseInterspersed(fl, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "%s validate: no config file given\n", programName)
		fl.Usage()
		return exitUsage
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		fmt.Fprintf(stderr, "%s validate: %v\n", programName, err)
		return exitFailed
	}
	if *skipFiles {
		opts = append(opts, config.SkipFileChecks())
	}
	code := exitOK
	for _, file := range files {
		if ctx.Err() != nil {
			return exitFailed
		}
		cfg, err := config.Load(file, opts...)
		var errs *config.Errors
		switch {
		case errors.As(err, &errs):
			for _, e := range errs.List {
				fmt.Fprintln(stdout, e.Error())
			}
			code = exitFailed
		case err != nil:
			fmt.Fprintf(stdout, "%s: %v\n", file, unwrapPathError(err))
			code = exitFailed
		default:
			// Rules compile against the profiles' fields: check them too.
			if err := gateway.CheckRules(cfg); err != nil {
				fmt.Fprintln(stdout, err)
				code = exitFailed
				continue
			}
			// What the example leaves for the installer to fill in.
			if err := config.Placeholders(cfg, nil, opts...); err != nil {
				fmt.Fprintln(stdout, err)
				code = exitFailed
				continue
			}
			fmt.Fprintf(stdout, "%s: ok: %s\n", file, cfg.Summary())
			if note := boardNote(cfg); note != "" {
				fmt.Fprintf(stdout, "%s: note: %s\n", file, note)
			}
		}
	}
	return code
}

// boardNote says which GPIO lines the check could not see: they exist only
// on the board (or come from the GPIO simulator of gpio.simulator).
func boardNote(cfg *config.Config) string {
	lines := cfg.GPIOLines
	if len(lines) == 0 {
		return ""
	}
	list := strings.Join(lines, ", ")
	if cfg.GPIO.Simulator != "" {
		return fmt.Sprintf("GPIO lines %s come from the GPIO simulator at %s (bench test: no real line is used; remove gpio.simulator on the board)", list, cfg.GPIO.Simulator)
	}
	return fmt.Sprintf("GPIO lines %s are checked only on the board: run gatewayd there, or set gpio.simulator for a bench test", list)
}

// unwrapPathError turns "config: open gw.yaml: no such file or directory"
// into "cannot read: no such file or directory": the line starts with the file.
func unwrapPathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot " + pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
