package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/errors")

// testRules are the rules the built-in serial drivers give of themselves
// (drivers/all hands them to the loader from drivers.Info; this package
// cannot import the drivers).
func testRules() Option {
	return DriverRules(map[string]DriverRule{
		"modbus":  {Bus: true, UnitMin: 1, UnitMax: 247, Profile: true},
		"sunspec": {Bus: true, UnitMin: 1, UnitMax: 247},
		"osdp":    {Bus: true, UnitMin: 0, UnitMax: 126, CardReader: true},
	})
}

// catalog is what the golden tests know about drivers and profiles.
func catalog() []Option {
	return []Option{
		KnownDrivers("modbus", "sunspec", "osdp"),
		KnownProfiles("ultrasonic-bay", "geomagnetic-bay"),
		SkipFileChecks(),
		testRules(),
	}
}

// TestGoldenErrors loads each testdata/errors/*.yaml and compares the
// full error output, one FILE:LINE:COL line per mistake, with its .golden file.
func TestGoldenErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test cases: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(name, data, catalog()...)
			if err == nil {
				t.Fatalf("loaded without errors: %s", cfg.Summary())
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			for i, e := range errs.List {
				if e.File != name || e.Line < 1 {
					t.Errorf("error %d has no place: %+v", i, e)
				}
				if i > 0 && e.Line < errs.List[i-1].Line {
					t.Errorf("errors not sorted by line: %d after %d", e.Line, errs.List[i-1].Line)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}
