package modbus

import (
	"log/slog"
	"testing"

	"github.com/luling-edge/luling/drivers"
)

// A gateway holds hundreds of devices for its lifetime, so making one
// allocates only what it keeps: its tags, client, back-off and logger. The
// maps of field issues and implausible readings wait for the first one
// (two allocations, 96 bytes per device, before).
func TestNewAllocations(t *testing.T) {
	all, err := BuiltinProfiles()
	if err != nil {
		t.Fatal(err)
	}
	p := all["ultrasonic-bay"]
	log := slog.New(slog.NewTextHandler(nopWriter{}, nil)).With("site", "s", "gateway", "gw-1")
	spec := drivers.Spec{ID: "bay-017", Unit: 17, Tags: map[string]string{"lot": "l1", "zone": "z1", "bay": "017"}}
	env := drivers.Env{Bus: newBank(17, 6), Logger: log}
	n := testing.AllocsPerRun(20, func() {
		if _, err := NewWithProfile(spec, env, p); err != nil {
			t.Fatal(err)
		}
	})
	if n > 16 {
		t.Errorf("NewWithProfile allocates %v times, want at most 16", n)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
