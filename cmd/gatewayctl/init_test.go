package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// init writes a config from a scan: the bus with the settings that
// worked, one device per unit that answered. validate refuses its
// placeholders until they are filled in, then accepts it.
func TestInitWritesAConfigValidateAccepts(t *testing.T) {
	lot := readLot(t, 3)
	port := lot.Buses()[0].Path
	dir := t.TempDir()
	gw := filepath.Join(dir, "gateway.yaml")
	code, out, errOut := runCmd(t, "init", "-port", port, "-units", "1-5", "-timeout", "100ms", "-profile", "ultrasonic-bay", "-o", gw)
	if code != exitOK || !strings.Contains(out, "wrote "+gw+": 3 devices") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	body, err := os.ReadFile(gw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"port: " + port, "baud: 19200", "parity: even", "unit: 1\n", "unit: 2\n", "unit: 3\n", "profile: ultrasonic-bay", "# Gateway config written by gatewayctl init"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("config lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "unit: 4") {
		t.Errorf("a unit that did not answer is in the config:\n%s", body)
	}
	code, out, _ = runCmd(t, "validate", "-skip-files", gw)
	if code != exitFailed || !strings.Contains(out, gw+":6:7: site: \"change-me\"") || !strings.Contains(out, "uplink.brokers") || !strings.Contains(out, "gateway: \"gw-change-me\"") {
		t.Errorf("placeholders not refused: exit %d:\n%s", code, out)
	}
	filled := strings.NewReplacer("change-me", "harbour", "broker.example.net", "mqtt.harbour.test").Replace(string(body))
	if err := os.WriteFile(gw, []byte(filled), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "validate", "-skip-files", gw)
	if code != exitOK || out != gw+": ok: site harbour, gateway gw-harbour, 1 bus, 3 devices\n" {
		t.Errorf("filled-in config: exit %d:\n%s", code, out)
	}
	// An existing file is not overwritten.
	if code, _, errOut := runCmd(t, "init", "-port", port, "-units", "1", "-o", gw); code != exitFailed || !strings.Contains(errOut, "exists") {
		t.Errorf("overwrite: exit %d: %s", code, errOut)
	}
}

// Without -profile the devices are written commented out: the filled-in
// config validates with none, and says which units answered.
func TestInitWithoutProfileCommentsTheDevices(t *testing.T) {
	lot := readLot(t, 2)
	port := lot.Buses()[0].Path
	code, out, errOut := runCmd(t, "init", "-port", port, "-units", "1-3", "-timeout", "100ms")
	if code != exitOK {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"  # - id: unit-001", "  #   unit: 2", "  #   profile: PROFILE"} {
		if !strings.Contains(out, want) {
			t.Errorf("config lacks %q:\n%s", want, out)
		}
	}
	gw := filepath.Join(t.TempDir(), "gateway.yaml")
	filled := strings.NewReplacer("change-me", "harbour", "broker.example.net", "mqtt.harbour.test").Replace(out)
	if err := os.WriteFile(gw, []byte(filled), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCmd(t, "validate", "-skip-files", gw); code != exitOK || !strings.Contains(out, "0 devices") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
