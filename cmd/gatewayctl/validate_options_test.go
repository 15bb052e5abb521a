package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/options")

// siteWith is a valid config holding one device entry (a driver's example).
func siteWith(device string) string {
	var b strings.Builder
	b.WriteString(`site: lot-a
gateway: gw-01
uplink: {brokers: [tcp://mqtt.lota.test:1883]}
outbox: {path: /var/lib/luling/outbox}
buses:
  - {name: rs485-1, port: /dev/ttyUSB0}
  - {name: rs485-2, port: /dev/ttyUSB1}
  - {name: rs485-3, port: /dev/ttyUSB2}
devices:
`)
	for _, line := range strings.Split(strings.TrimSpace(device), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// typo picks an option key the example sets (one that is not required,
// when there is one) and misspells it by dropping its middle letter.
func typo(t *testing.T, info drivers.Info) (key, bad string) {
	t.Helper()
	for _, f := range info.Options {
		if strings.Contains(info.Example, f.Key+":") && (key == "" || !f.Required) {
			key = f.Key
			if !f.Required {
				break
			}
		}
	}
	if key == "" {
		t.Fatalf("driver %s: its example sets none of its options; give it one", info.Name)
	}
	return key, key[:len(key)/2] + key[len(key)/2+1:]
}

// TestValidateDriverOptions: for every built-in driver, its example
// validates, and a typo under the device's options: is reported by
// validate with its line and "did you mean" (pinned by
// testdata/options/<driver>.golden).
func TestValidateDriverOptions(t *testing.T) {
	names := drivers.Names()
	if len(names) < 5 {
		t.Fatalf("only %d drivers registered: %v", len(names), names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			info, _ := drivers.Lookup(name)
			if info.Options == nil || info.Example == "" {
				t.Fatalf("driver %s does not describe its options (Info.Options, Info.Example)", name)
			}
			dir := t.TempDir()
			gw := filepath.Join(dir, "gw.yaml")
			if err := os.WriteFile(gw, []byte(siteWith(info.Example)), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, out, errOut := runCmd(t, "validate", "-skip-files", gw); code != exitOK {
				t.Fatalf("example of %s does not validate: exit %d\n%s%s", name, code, out, errOut)
			}
			key, bad := typo(t, info)
			broken := strings.Replace(info.Example, key+":", bad+":", 1)
			if err := os.WriteFile(gw, []byte(siteWith(broken)), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, _ := runCmd(t, "validate", "-skip-files", gw)
			out = strings.ReplaceAll(out, dir+string(filepath.Separator), "")
			if code != exitFailed || !strings.Contains(out, "(did you mean "+key+"?)") {
				t.Errorf("exit %d, output:\n%swant a did-you-mean for %s", code, out, key)
			}
			golden := filepath.Join("testdata", "options", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", golden, out, want)
			}
		})
	}
}

// TestValidateOptionValues: values under options: are checked against the
// driver's schema (types, ranges, allowed values, required keys), every
// mistake with its place.
func TestValidateOptionValues(t *testing.T) {
	src := filepath.Join("testdata", "options", "values.yaml")
	code, out, _ := runCmd(t, "validate", "-skip-files", src)
	if code != exitFailed {
		t.Errorf("exit %d", code)
	}
	golden := filepath.Join("testdata", "options", "values.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", golden, out, want)
	}
}
