package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
)

// runRead reads one Modbus device once through the modbus driver and a
// profile, and prints every decoded field (published or not).
func runRead(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("read", "-port PATH -unit N -profile NAME|FILE [-baud N] [-parity even] [-json]", stderr)
	lf := addLineFlags(fs, 500*time.Millisecond, false)
	unit := fs.Int("unit", 0, "unit address 1..247 (required)")
	profile := fs.String("profile", "", "a built-in profile name (ultrasonic-bay) or a profile file (required)")
	asJSON := fs.Bool("json", false, "print the values as one JSON object")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	pc, _, ok := lf.line("read", fs, stderr)
	if !ok {
		return exitUsage
	}
	if *profile == "" {
		fmt.Fprintf(stderr, "%s read: -profile is required\n", programName)
		return exitUsage
	}
	if *unit < 1 || *unit > modbus.MaxUnit {
		fmt.Fprintf(stderr, "%s read: -unit %d: want 1..%d\n", programName, *unit, modbus.MaxUnit)
		return exitUsage
	}
	p, err := findProfile(*profile)
	if err != nil {
		fmt.Fprintf(stderr, "%s read: -profile: %v\n", programName, err)
		return exitUsage
	}
	b, closeBus, err := openBus(ctx, pc, *lf.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s read: %v\n", programName, err)
		return exitFailed
	}
	defer closeBus()
	id := fmt.Sprintf("unit-%d", *unit)
	dev, err := modbus.NewWithProfile(drivers.Spec{ID: id, Driver: modbus.DriverName, Unit: *unit, Profile: p.Name}, drivers.Env{Bus: b.Device(id)}, p)
	if err != nil {
		fmt.Fprintf(stderr, "%s read: %v\n", programName, err)
		return exitUsage
	}
	values, err := dev.ReadAll(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s read: %s unit %d (%s): %s\n", programName, pc.Name, *unit, pc, readProblem(err))
		return exitFailed
	}
	if *asJSON {
		out := map[string]any{"port": pc.Name, "unit": *unit, "profile": p.Name, "measurement": p.Measurement, "fields": map[string]any{}}
		for name, v := range values {
			out["fields"].(map[string]any)[name] = v.Interface()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "%s read: %v\n", programName, err)
			return exitFailed
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "%s unit %d, profile %s (%s)\n", pc.Name, *unit, p.Name, p.Measurement)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tVALUE\tPUBLISHED\tDESCRIPTION")
	for _, f := range p.Fields {
		v, ok := values[f.Name]
		shown := "-" // left out: "no reading", or an implausible value
		if ok {
			shown = v.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", f.Name, shown, f.Publish, f.Description)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "%s read: %v\n", programName, err)
		return exitFailed
	}
	return exitOK
}

// findProfile takes a built-in profile's name, or a profile file.
func findProfile(arg string) (*modbus.Profile, error) {
	if !strings.ContainsAny(arg, `/\`) && !strings.HasSuffix(arg, ".yaml") && !strings.HasSuffix(arg, ".yml") {
		all, err := modbus.BuiltinProfiles()
		if err != nil {
			return nil, err
		}
		if p, ok := all[arg]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("no built-in profile %q (built in: %s; or give a profile file)", arg, strings.Join(profileNames(all), ", "))
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return nil, unwrapOpenError(err)
	}
	return modbus.LoadProfile(arg, data)
}

// readProblem says what a failed read means on the line.
func readProblem(err error) string {
	var ex *modbus.ExceptionError
	switch {
	case modbus.IsGatewayAbsent(err):
		return fmt.Sprintf("absent behind a Modbus gateway: %v", err)
	case errors.As(err, &ex):
		return fmt.Sprintf("the device answered with an exception: %v (is the profile the device's?)", err)
	case errors.Is(err, drivers.ErrTimeout):
		return fmt.Sprintf("no answer: %v (check the unit address, wiring, -baud and -parity; gatewayctl scan -auto finds them)", err)
	default:
		return fmt.Sprintf("garbled reply: %v (CRC or framing: the line settings are likely wrong; try gatewayctl scan -auto)", err)
	}
}

func profileNames(all map[string]*modbus.Profile) []string {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
