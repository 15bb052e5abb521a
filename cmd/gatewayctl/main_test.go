package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExamples(t *testing.T) {
	small := "../../firmware-config/examples/small-lot.yaml"
	large := "../../firmware-config/examples/large-lot.yaml"
	code, out, errOut := runCmd(t, "validate", "-skip-files", small, large)
	// The examples are right but for the brokers: names reserved for
	// examples, which an installer must replace.
	hint := " is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)\n"
	want := small + ":7:13: uplink.brokers: tcp://mqtt.greenfield.example:1883" + hint +
		large + ":12:7: uplink.brokers: ssl://mqtt-a.riverside.example:8883" + hint +
		large + ":13:7: uplink.brokers: ssl://mqtt-b.riverside.example:8883" + hint
	if code != exitFailed || out != want || errOut != "" {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
	}
}

func TestValidateFileChecks(t *testing.T) {
	dir := t.TempDir()
	cfg := `site: lot-a
gateway: gw-01
uplink:
  brokers: [tcp://mqtt.lota.test:1883]
  username: gw-01
  password_file: mqtt.pass
outbox: {path: /var/lib/luling/outbox}
buses: [{name: rs485-1, port: /dev/ttyUSB0}]
devices:
  - {id: bay-001, driver: modbus, bus: rs485-1, unit: 1, profile: ultrasonic-bay}
`
	gw := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(gw, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "validate", gw)
	want := gw + ":6:18: uplink.password_file: cannot read " + filepath.Join(dir, "mqtt.pass") +
		": no such file or directory (relative paths are resolved against the config file's folder " + dir + ")\n"
	if code != exitFailed || out != want {
		t.Errorf("exit %d\n got %q\nwant %q", code, out, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "mqtt.pass"), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "validate", gw)
	if code != exitOK || out != gw+": ok: site lot-a, gateway gw-01, 1 bus, 1 device\n" {
		t.Errorf("exit %d: %q", code, out)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := "../../firmware-config/examples/small-lot.yaml"
	err := os.WriteFile(bad, []byte(`site: lot-a
gateway: gw-01
uplink: {brokers: [tcp://mqtt.lota.test:1883], qos: 0}
outbox: {path: /data/outbox, max_bytes: 64MB}
buses: [{name: rs485-1, port: /dev/ttyUSB0}]
devices:
  - {id: bay-001, driver: modbsu, bus: rs485-1, unit: 1}
  - {id: bay-002, driver: modbus, bus: rs485-1, unit: 2, profile: ultrasonik-bay}
  - {id: bay-003, driver: modbus, bus: rs485-1, unit: 2, profile: ultrasonic-bay}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "validate", "-skip-files", bad, good, filepath.Join(dir, "missing.yaml"))
	want := []string{
		bad + ":3:53: uplink.qos: qos 0 is not allowed; only 1 is (the MQTT contract uses QoS 1 everywhere: readings are deleted from the outbox only after the broker's PUBACK)",
		bad + ":7:27: devices[0].driver: unknown driver \"modbsu\" (did you mean modbus?)",
		bad + ":8:67: devices[1].profile: unknown profile \"ultrasonik-bay\" (did you mean ultrasonic-bay?)",
		bad + ":9:55: devices[2].unit: unit 2 of bay-003 is already used on bus rs485-1 by bay-002 (line 8) (every device on one bus needs its own unit)",
		good + ":7:13: uplink.brokers: tcp://mqtt.greenfield.example:1883 is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)",
		filepath.Join(dir, "missing.yaml") + ": cannot open: no such file or directory",
	}
	if code != exitFailed || out != strings.Join(want, "\n")+"\n" {
		t.Errorf("exit %d\n got:\n%s\nwant:\n%s", code, out, strings.Join(want, "\n"))
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		code      int
		stderrHas string
		stdoutHas string
	}{
		{nil, exitUsage, "usage: gatewayctl COMMAND", ""},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`, ""},
		{[]string{"validate"}, exitUsage, "no config file given", ""},
		{[]string{"validate", "-strict", "gw.yaml"}, exitUsage, "flag provided but not defined: -strict", ""},
		{[]string{"validate", "-h"}, exitOK, "usage: gatewayctl validate", ""},
		{[]string{"help"}, exitOK, "", "validate   check gateway config files"},
	} {
		code, out, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderrHas) || !strings.Contains(out, tc.stdoutHas) {
			t.Errorf("%q: exit %d (want %d)\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, errOut)
		}
	}
}

func TestCatalogKnowsBuiltins(t *testing.T) {
	// The embedded profiles and the registered modbus driver must be known,
	// or every shipped example would fail on site.
	// Only the example brokers are left to fill in.
	code, out, _ := runCmd(t, "validate", "-skip-files", "../../firmware-config/examples/large-lot.yaml")
	if strings.Count(out, "\n") != 2 || strings.Count(out, "placeholder broker") != 2 {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// The config the package installs parses, but validate refuses its
// placeholders, each at its line, until the installer fills them in.
func TestPackagedConfigValidates(t *testing.T) {
	example := "../../firmware-config/packaging/gateway.yaml"
	code, out, _ := runCmd(t, "validate", "-skip-files", example)
	want := example + ":4:7: site: \"change-me\" is the example's placeholder (use the site name agreed with the platform, or install a provisioning bundle)\n" +
		example + ":7:13: uplink.brokers: tcp://broker.example.net:1883 is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)\n" +
		example + ":8:13: uplink.username: \"change-me/gw-01\" is the example's placeholder ({site}/{gateway})\n"
	if code != exitFailed || out != want {
		t.Fatalf("exit %d\n got:\n%s\nwant:\n%s", code, out, want)
	}
	body, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	filled := filepath.Join(t.TempDir(), "gateway.yaml")
	edited := strings.NewReplacer("change-me", "harbour-lot", "broker.example.net", "mqtt.harbour.test").Replace(string(body))
	if err := os.WriteFile(filled, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "validate", "-skip-files", filled)
	if code != exitOK || out != filled+": ok: site harbour-lot, gateway gw-01, 1 bus, 8 devices\n" {
		t.Fatalf("filled in: exit %d:\n%s", code, out)
	}
}

// A config with GPIO lines validates, with a note that names the lines only
// the board (or gpio.simulator) can check.
func TestValidateNotesGPIOLines(t *testing.T) {
	dir := t.TempDir()
	cfg := `site: lot-a
gateway: gw-01
uplink: {brokers: [tcp://mqtt.lota.test:1883]}
outbox: {path: /var/lib/luling/outbox}
buses: [{name: rs485-1, port: /dev/ttyUSB1, baud: 9600}]
devices:
  - {id: reader-1, driver: osdp, bus: rs485-1, unit: 1}
  - {id: loop-1, driver: gpio, options: {pin: GPIO23, direction: in}}
doors:
  - {name: lobby, readers: [reader-1], strike: "gpiochip0:17", contact: {pin: "gpiochip0:22", active_low: true}}
`
	gw := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(gw, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, "validate", gw)
	want := gw + ": ok: site lot-a, gateway gw-01, 1 bus, 2 devices, 1 door\n" +
		gw + ": note: GPIO lines GPIO23, gpiochip0:17, gpiochip0:22 are checked only on the board: run gatewayd there, or set gpio.simulator for a bench test\n"
	if code != exitOK || out != want {
		t.Errorf("exit %d\n got %q\nwant %q", code, out, want)
	}
	if err := os.WriteFile(gw, []byte(cfg+"gpio: {simulator: /run/luling/gpio.sock}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, "validate", gw)
	if code != exitOK || !strings.Contains(out, "GPIO simulated at /run/luling/gpio.sock\n") ||
		!strings.Contains(out, "note: GPIO lines GPIO23, gpiochip0:17, gpiochip0:22 come from the GPIO simulator at /run/luling/gpio.sock") {
		t.Errorf("with gpio.simulator: exit %d: %q", code, out)
	}
}

// TestValidateFlagAfterFile: flags may follow the files (field report: -skip-files
// after the file was taken for a second file name).
func TestValidateFlagAfterFile(t *testing.T) {
	small := "../../firmware-config/examples/small-lot.yaml"
	code, out, errOut := runCmd(t, "validate", small, "-skip-files")
	want := small + ":7:13: uplink.brokers: tcp://mqtt.greenfield.example:1883 is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)\n"
	if code != exitFailed || out != want || errOut != "" {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version", "version"} {
		code, out, errOut := runCmd(t, arg)
		if code != exitOK || out != "gatewayctl "+version+"\n" || errOut != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
	}
}
