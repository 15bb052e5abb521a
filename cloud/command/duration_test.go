package command_test

import (
	"encoding/json"
	"testing"
	"time"

	cloudcmd "github.com/luling-edge/luling/cloud/command"
)

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{`"10s"`: 10 * time.Second, `"1m30s"`: 90 * time.Second, `2.5`: 2500 * time.Millisecond, `0`: 0} {
		var d cloudcmd.Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`"soon"`, `-1`, `true`, `"10"`, `1e9`} {
		var d cloudcmd.Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted as %v", in, time.Duration(d))
		}
	}
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{`"10s"`, `2.5`, `"-1h"`, `1e400`, `"1000000h"`, `null`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d cloudcmd.Duration
		if json.Unmarshal(b, &d) != nil {
			return
		}
		// Whatever it accepted encodes and decodes to the same duration.
		enc, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var d2 cloudcmd.Duration
		if err := json.Unmarshal(enc, &d2); err != nil || d2 != d {
			t.Fatalf("%s → %s → %v, %v", b, enc, time.Duration(d2), err)
		}
	})
}
