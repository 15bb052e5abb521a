package main

import (
	"io"
	"slices"
	"testing"

	"github.com/luling-edge/luling/payload"
)

// Whatever -allow-measurements and -seq-max-jump say, parsing never
// panics, and what it accepts is a list of measurement names or "*" alone,
// and a bound from 1 to 2^40.
func FuzzIngestTrustFlags(f *testing.F) {
	f.Add("rule_note, relay", "1048576")
	f.Add("*", "1")
	f.Add(",,a,,", "1099511627776")
	f.Add("a", "1099511627777")
	f.Add("*,x", "-1")
	f.Add("a b,\n", "0x10")
	f.Fuzz(func(t *testing.T, allow, jump string) {
		c, err := parseFlags([]string{"-allow-measurements", allow, "-seq-max-jump", jump}, io.Discard)
		if err != nil {
			return
		}
		tr := c.trust
		if tr.seqMaxJump < 1 || tr.seqMaxJump > 1<<40 {
			t.Fatalf("-seq-max-jump %q accepted as %d", jump, tr.seqMaxJump)
		}
		if slices.Contains(tr.measurements, "*") {
			if len(tr.measurements) != 1 {
				t.Fatalf("-allow-measurements %q accepted as %q", allow, tr.measurements)
			}
			return
		}
		for _, m := range tr.measurements {
			if !payload.ValidName(m) {
				t.Fatalf("-allow-measurements %q accepted %q", allow, m)
			}
		}
	})
}
