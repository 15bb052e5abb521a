package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestCheckRefusesTheExample: the packaged example parses, but
// gatewayd -check refuses it, naming every placeholder; once they are
// filled in it passes.
func TestCheckRefusesTheExample(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, "firmware-config", "packaging", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	body := strings.ReplaceAll(string(example), "/etc/luling/mqtt.pass", filepath.Join(dir, "mqtt.pass"))
	body = strings.ReplaceAll(body, "/var/lib/luling/outbox", filepath.Join(dir, "outbox"))
	os.WriteFile(cfg, []byte(body), 0o644)
	os.WriteFile(filepath.Join(dir, "mqtt.pass"), nil, 0o600)
	var out bytes.Buffer
	err = run(context.Background(), []string{"-config", cfg, "-check"}, &out, &out)
	if err == nil {
		t.Fatal("the unedited example passed -check")
	}
	for _, want := range []string{cfg + ": site: \"change-me\"", cfg + ": uplink.brokers: tcp://broker.example.net:1883", cfg + ": uplink.username: \"change-me/gw-01\"", cfg + ": uplink.password_file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	body = strings.NewReplacer("change-me", "harbour-lot", "broker.example.net", "mqtt.harbour.test").Replace(body)
	os.WriteFile(cfg, []byte(body), 0o644)
	os.WriteFile(filepath.Join(dir, "mqtt.pass"), []byte("secret\n"), 0o600)
	if err := run(context.Background(), []string{"-config", cfg, "-check"}, &out, &out); err != nil {
		t.Errorf("filled-in example: %v", err)
	}
}
