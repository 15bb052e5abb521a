package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
)

func readLot(t *testing.T, bays int) *modbussim.Lot {
	t.Helper()
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: bays, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lot.Close() })
	return lot
}

// read decodes one device through the real driver and profile: the
// values are the simulated bay's (occupied, and the unit it reports).
func TestReadPrintsTheDecodedValues(t *testing.T) {
	lot := readLot(t, 2)
	if err := lot.SetOccupied(1, true); err != nil {
		t.Fatal(err)
	}
	if err := lot.SetOccupied(2, false); err != nil {
		t.Fatal(err)
	}
	port := lot.Buses()[0].Path
	code, out, errOut := runCmd(t, "read", "-port", port, "-unit", "1", "-profile", "ultrasonic-bay")
	if code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	fields := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			fields[f[0]] = f[1:]
		}
	}
	if got := fields["occupied"]; len(got) < 2 || got[0] != "true" || got[1] != "true" {
		t.Errorf("occupied row %v, want value true, published true:\n%s", got, out)
	}
	if got := fields["unit_address"]; len(got) < 2 || got[0] != "1" || got[1] != "false" {
		t.Errorf("unit_address row %v, want 1, not published:\n%s", got, out)
	}
	if !strings.HasPrefix(out, port+" unit 1, profile ultrasonic-bay") {
		t.Errorf("no header naming port, unit and profile:\n%s", out)
	}

	// -json, with the profile given as a file.
	root := "../../firmware-config/profiles/ultrasonic-bay.yaml"
	code, out, errOut = runCmd(t, "read", "-port", port, "-unit", "2", "-profile", root, "-json")
	if code != exitOK {
		t.Fatalf("-json: exit %d: %s%s", code, out, errOut)
	}
	var got struct {
		Unit    int            `json:"unit"`
		Profile string         `json:"profile"`
		Fields  map[string]any `json:"fields"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-json output: %v\n%s", err, out)
	}
	if got.Unit != 2 || got.Profile != "ultrasonic-bay" || got.Fields["occupied"] != false || got.Fields["unit_address"] != float64(2) {
		t.Errorf("-json: %+v", got)
	}
}

// Errors name the port and the unit and say what the line did.
func TestReadErrorsNamePortAndUnit(t *testing.T) {
	lot := readLot(t, 1)
	port := lot.Buses()[0].Path
	code, _, errOut := runCmd(t, "read", "-port", port, "-unit", "9", "-profile", "ultrasonic-bay", "-timeout", "100ms")
	if code != exitFailed || !strings.Contains(errOut, port+" unit 9") || !strings.Contains(errOut, "no answer") {
		t.Errorf("silent unit: exit %d: %s", code, errOut)
	}
	lot.Server(0).Unit(1).CorruptNext(100)
	code, _, errOut = runCmd(t, "read", "-port", port, "-unit", "1", "-profile", "ultrasonic-bay", "-timeout", "100ms")
	if code != exitFailed || !strings.Contains(errOut, port+" unit 1") || !strings.Contains(errOut, "garbled reply") {
		t.Errorf("corrupt replies: exit %d: %s", code, errOut)
	}
	// A profile whose register the device does not have: its exception.
	prof := filepath.Join(t.TempDir(), "wrong.yaml")
	wrong := "name: wrong\nmeasurement: wrong\nblocks:\n  - {name: far, function: holding, address: 9000, count: 1}\nfields:\n  - {name: x, address: 9000, type: uint16}\n"
	if err := os.WriteFile(prof, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	lot.Server(0).Unit(1).CorruptNext(0)
	code, _, errOut = runCmd(t, "read", "-port", port, "-unit", "1", "-profile", prof, "-timeout", "100ms")
	if code != exitFailed || !strings.Contains(errOut, port+" unit 1") || !strings.Contains(errOut, "exception") {
		t.Errorf("wrong profile: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{{"read", "-port", port, "-unit", "1"}, {"read", "-port", port, "-unit", "0", "-profile", "ultrasonic-bay"}, {"read", "-port", port, "-unit", "1", "-profile", "ultrasonik-bay"}} {
		if code, _, errOut := runCmd(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
}
