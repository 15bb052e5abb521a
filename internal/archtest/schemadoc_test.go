package archtest

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/payload"
)

// schemaDoc is what docs/influxdb-schema.md says: the contract table's
// fields and types per measurement, and the fields column of the further
// measurements.
type schemaDoc struct {
	contract map[string]map[string]string // measurement → field → type
	further  map[string]string            // measurement → fields column
}

var (
	docTick = regexp.MustCompile("`([a-z0-9_]+)`")
	docType = regexp.MustCompile(`^\((float|int|bool|string)\b`)
)

// docFields reads a fields cell such as "`a`, `b` (float), `c` (bool, when
// …)": a type in parentheses applies to the names since the previous type.
func docFields(cell string) map[string]string {
	out := map[string]string{}
	var pending []string
	for len(cell) > 0 {
		if m := docTick.FindStringSubmatchIndex(cell); m != nil && m[0] == 0 {
			pending = append(pending, cell[m[2]:m[3]])
			cell = cell[m[1]:]
			continue
		}
		if m := docType.FindStringSubmatch(cell); m != nil {
			for _, f := range pending {
				out[f] = m[1]
			}
			pending = nil
			// Skip the parenthesis: the names in it are values, not fields.
			if end := strings.IndexByte(cell, ')'); end > 0 {
				cell = cell[end+1:]
				continue
			}
		}
		if cell[0] == '(' {
			// A note such as "(tag `name`)" names no fields.
			if end := strings.IndexByte(cell, ')'); end > 0 {
				cell = cell[end+1:]
				continue
			}
		}
		cell = cell[1:]
	}
	for _, f := range pending {
		out[f] = "" // no type given
	}
	return out
}

func readSchemaDoc(t *testing.T) schemaDoc {
	t.Helper()
	src, err := os.ReadFile("../../docs/influxdb-schema.md")
	if err != nil {
		t.Fatal(err)
	}
	d := schemaDoc{contract: map[string]map[string]string{}, further: map[string]string{}}
	section := ""
	for _, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(line, "#") {
			section = line
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		m := docTick.FindStringSubmatch(cells[1])
		if m == nil {
			continue
		}
		switch {
		case section == "# InfluxDB schema" && len(cells) >= 5:
			d.contract[m[1]] = docFields(cells[3])
		case section == "## Further measurements" && len(cells) >= 6:
			d.further[m[1]] = strings.TrimSpace(cells[3])
		}
	}
	return d
}

// TestSchemaDocMatchesSchema keeps docs/influxdb-schema.md, which calls itself
// the contract, in step with what is written: every measurement of
// payload.Schema has a row with each of its fields and their types, every
// field a shipped Modbus profile publishes into a contract measurement is
// documented with its type, and every measurement of
// payload.GatewayMeasurements has a row naming its fields.
func TestSchemaDocMatchesSchema(t *testing.T) {
	doc := readSchemaDoc(t)
	if len(doc.contract) < 5 || len(doc.further) < 3 {
		t.Fatalf("read %d contract rows and %d further rows: the tables' format changed", len(doc.contract), len(doc.further))
	}
	var names []string
	for name := range payload.Schema {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		row, ok := doc.contract[name]
		if !ok {
			t.Errorf("measurement %s (payload.Schema) has no row in the contract table", name)
			continue
		}
		for field, typ := range payload.Schema[name].Fields {
			if got, ok := row[field]; !ok || got != typ.String() {
				t.Errorf("%s.%s: payload.Schema says %s, the document says %q (present %v)", name, field, typ, got, ok)
			}
		}
		for field, typ := range row {
			if typ == "" {
				t.Errorf("%s.%s: the document gives no type", name, field)
			}
			if want, ok := payload.Schema[name].Fields[field]; ok && want.String() != typ {
				t.Errorf("%s.%s: documented as %s, payload.Schema says %s", name, field, typ, want)
			}
		}
	}
	for name := range doc.contract {
		if payload.Schema[name] == nil {
			t.Errorf("the contract table documents %s, which payload.Schema does not have", name)
		}
	}
	profiles, err := modbus.BuiltinProfiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range profiles {
		row, ok := doc.contract[p.Measurement]
		if !ok {
			continue // a further measurement: documented with the profile
		}
		for _, f := range p.Fields {
			if !f.Publish {
				continue
			}
			if got := row[f.Name]; got != f.Output.String() {
				t.Errorf("profile %s publishes %s.%s as %s, the document says %q", p.Name, p.Measurement, f.Name, f.Output, got)
			}
		}
	}
	further := map[string]bool{}
	for _, name := range payload.GatewayMeasurements {
		further[name] = true
		cell, ok := doc.further[name]
		if !ok {
			t.Errorf("measurement %s (payload.GatewayMeasurements) has no row under Further measurements", name)
			continue
		}
		if len(docFields(cell)) == 0 {
			t.Errorf("measurement %s: the row names no fields: %q", name, cell)
		}
	}
	for name := range doc.further {
		if !further[name] {
			t.Errorf("Further measurements documents %s, which payload.GatewayMeasurements does not have", name)
		}
	}
}

func TestDocFields(t *testing.T) {
	got := docFields("`occupied` (bool), `distance_cm` (float, when `x` is set), `a`, `b` (int), `event` (string: opened, closed)")
	want := map[string]string{"occupied": "bool", "distance_cm": "float", "a": "int", "b": "int", "event": "string"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}
