package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
)

// runSchema prints the config's JSON Schema (draft 2020-12), for editors:
// gatewayctl schema > gateway.schema.json.
func runSchema(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flagSet("schema", "> gateway.schema.json", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s schema: takes no arguments\n", programName)
		return exitUsage
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		fmt.Fprintf(stderr, "%s schema: %v\n", programName, err)
		return exitFailed
	}
	s, err := config.JSONSchema(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "%s schema: %v\n", programName, err)
		return exitFailed
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		fmt.Fprintf(stderr, "%s schema: %v\n", programName, err)
		return exitFailed
	}
	return exitOK
}
