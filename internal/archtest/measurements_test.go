package archtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luling-edge/luling/payload"
)

// Every measurement the gateway, its drivers, the bundled plugins and the
// shipped device profiles write is one cloudd accepts by default
// (payload.Schema or payload.GatewayMeasurements): otherwise cloudd would
// drop its records unless configured with -allow-measurements.
func TestGatewayMeasurementsAreAccepted(t *testing.T) {
	allowed := map[string]bool{}
	for name := range payload.Schema {
		allowed[name] = true
	}
	for _, name := range payload.GatewayMeasurements {
		allowed[name] = true
	}
	goName := regexp.MustCompile(`Measurement\w*(?:\s*:|\s*=)\s*"([^"]+)"`)
	yamlName := regexp.MustCompile(`(?m)^measurement:\s*([A-Za-z_][A-Za-z0-9_.-]*)`)
	found := 0
	for _, root := range []string{"gateway", "drivers", "plugins", "firmware-config/profiles"} {
		err := filepath.WalkDir(filepath.Join("../..", root), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			re := goName
			switch {
			case strings.HasSuffix(path, "_test.go"):
				return nil
			case strings.HasSuffix(path, ".yaml"):
				re = yamlName
			case !strings.HasSuffix(path, ".go"):
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllSubmatch(src, -1) {
				found++
				if name := string(m[1]); !allowed[name] {
					t.Errorf("%s writes measurement %q: add it to payload.GatewayMeasurements and docs/influxdb-schema.md", path, name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found < 10 {
		t.Fatalf("found only %d measurement names: the patterns no longer match the sources", found)
	}
}
