package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `site: lot-a
gateway: gw-01
uplink:
  brokers: [tcp://127.0.0.1:1883]
outbox:
  path: /tmp/luling-outbox-test
buses:
  - {name: rs485-1, port: /dev/ttyUSB0}
devices:
  - {id: bay-001, driver: modbus, bus: rs485-1, unit: 1, profile: ultrasonic-bay}
  - {id: inv-1, driver: sunspec, bus: rs485-1, unit: 2}
`

func TestCheckValidConfig(t *testing.T) {
	var out, errb bytes.Buffer
	p := writeConfig(t, goodConfig)
	if err := run(context.Background(), []string{"-config", p, "-check"}, &out, &errb); err != nil {
		t.Fatalf("run: %v", err)
	}
	if want := p + ": ok: site lot-a, gateway gw-01, 1 bus, 2 devices\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}

func TestBadConfigNamesFileAndLine(t *testing.T) {
	p := writeConfig(t, strings.Replace(goodConfig, "profile: ultrasonic-bay", "profile: ultrasonic-bays", 1))
	err := run(context.Background(), []string{"-config", p}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), p+":10:") || !strings.Contains(err.Error(), "ultrasonic-bays") {
		t.Fatalf("want an error naming %s:10 and the profile, got %v", p, err)
	}
	var u usageError
	if errors.As(err, &u) {
		t.Fatal("a config error is not a usage error")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"-config", "a.yaml", "extra"}} {
		err := run(context.Background(), args, new(bytes.Buffer), new(bytes.Buffer))
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%v: want a usage error, got %v", args, err)
		}
	}
}

func TestMissingConfigFile(t *testing.T) {
	err := run(context.Background(), []string{"-config", "/nonexistent/gateway.yaml"}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/gateway.yaml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, &out, new(bytes.Buffer)); err != nil || !strings.HasPrefix(out.String(), "gatewayd ") {
		t.Fatalf("%q %v", out.String(), err)
	}
}

// A rule mistake is reported with its place by -check and at start-up.
func TestBadRuleNamesFileAndLine(t *testing.T) {
	p := writeConfig(t, strings.Replace(goodConfig, "outbox:\n  path: /tmp/luling-outbox-test", "outbox:\n  path: "+t.TempDir(), 1)+
		"rules:\n  - name: typo\n    trigger: {measurement: parking_bay}\n    when: ocupied\n    actions:\n      - alert: {severity: info, message: x}\n")
	for _, args := range [][]string{{"-config", p, "-check"}, {"-config", p}} {
		err := run(context.Background(), args, new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), p+":15:") || !strings.Contains(err.Error(), `rule "typo"`) || !strings.Contains(err.Error(), "ocupied") {
			t.Errorf("%v: want the rule's error with file and line, got %v", args, err)
		}
	}
}

func TestDoubleDashVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, new(bytes.Buffer)); err != nil || out.String() != "gatewayd "+version+"\n" {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
}
