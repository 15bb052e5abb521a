package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// compileSchema compiles what gatewayctl schema prints.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	code, out, errOut := runCmd(t, "schema")
	if code != exitOK {
		t.Fatalf("schema: exit %d: %s", code, errOut)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("gateway.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("gateway.schema.json")
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return s
}

// yamlInstance turns a YAML config into the JSON value a schema checks.
func yamlInstance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// Every example config and the packaged one validate against the schema.
func TestSchemaAcceptsTheExamples(t *testing.T) {
	s := compileSchema(t)
	files, err := filepath.Glob("../../firmware-config/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	files = append(files, "../../firmware-config/packaging/gateway.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlInstance(t, data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// What validate refuses for an unknown key or a wrong type, the schema
// refuses too.
func TestSchemaRejectsWhatValidateRejects(t *testing.T) {
	s := compileSchema(t)
	base, err := os.ReadFile("../../firmware-config/examples/small-lot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base = []byte(strings.ReplaceAll(string(base), "greenfield.example", "greenfield.test"))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, base, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCmd(t, "validate", "-skip-files", good); code != exitOK {
		t.Fatalf("base config: exit %d: %s", code, out)
	}
	if err := s.Validate(yamlInstance(t, base)); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"unknown top key", "site:", "sight: x\nsite:"},
		{"unknown uplink key", "uplink:", "uplink:\n  keep_alive: 30s"},
		{"unknown device key", "driver: modbus", "driver: modbus\n    pol: 1s"},
		{"baud not a number", "baud: 9600", "baud: fast"},
		{"parity not a choice", "baud: 9600", "baud: 9600\n    parity: mark"},
		{"poll not a duration", "poll: 1s", "poll: [1s]"},
		{"unknown driver option", "driver: modbus", "driver: modbus\n    options: {read_olny: true}"},
		{"driver option of the wrong type", "driver: modbus", "driver: modbus\n    options: {read_only: 3}"},
		{"qos not 1", "brokers:", "qos: 0\n  brokers:"},
		{"unknown driver", "driver: modbus", "driver: modbsu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("small-lot.yaml has no %q", tc.old)
			}
			bad := strings.Replace(string(base), tc.old, tc.new, 1)
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, out, _ := runCmd(t, "validate", "-skip-files", f); code != exitFailed {
				t.Fatalf("validate accepted it: exit %d: %s", code, out)
			}
			if err := s.Validate(yamlInstance(t, []byte(bad))); err == nil {
				t.Errorf("the schema accepted it:\n%s", bad)
			}
		})
	}
}
