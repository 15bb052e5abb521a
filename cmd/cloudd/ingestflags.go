package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
)

// ingestTrust is what cloudd accepts from gateways beyond the wire
// contract: how far a sequence number may jump ahead, and which
// measurements outside the schema are written.
type ingestTrust struct {
	seqMaxJump   uint64
	measurements []string // -allow-measurements, split
}

// ingestTrustFlags registers -seq-max-jump and -allow-measurements on fs;
// the returned function checks their values after fs.Parse.
func ingestTrustFlags(fs *flag.FlagSet, env func(name, def string) string) (*ingestTrust, func() error) {
	jump := env("SEQ_MAX_JUMP", strconv.Itoa(fleet.DefaultMaxJump))
	allow := env("ALLOW_MEASUREMENTS", "")
	fs.Func("seq-max-jump", fmt.Sprintf("how far ahead of the expected sequence number a message may be before it is rejected as seq_jump (default %d) [LULING_CLOUD_SEQ_MAX_JUMP]", fleet.DefaultMaxJump),
		func(s string) error { jump = s; return nil })
	fs.Func("allow-measurements", `comma-separated measurements written besides the schema's, or "*" for every one; records of others are dropped and counted [LULING_CLOUD_ALLOW_MEASUREMENTS]`,
		func(s string) error { allow = s; return nil })
	t := &ingestTrust{}
	return t, func() error {
		n, err := strconv.ParseUint(strings.TrimSpace(jump), 10, 64)
		if err != nil || n < 1 || n > fleet.MaxJumpLimit {
			return fmt.Errorf("-seq-max-jump %q: want an integer from 1 to %d", jump, uint64(fleet.MaxJumpLimit))
		}
		t.seqMaxJump = n
		t.measurements = nil
		for _, name := range strings.Split(allow, ",") {
			if name = strings.TrimSpace(name); name != "" {
				t.measurements = append(t.measurements, name)
			}
		}
		if err := ingest.CheckMeasurements(t.measurements); err != nil {
			return fmt.Errorf("-allow-measurements %q: %w", allow, err)
		}
		return nil
	}
}
