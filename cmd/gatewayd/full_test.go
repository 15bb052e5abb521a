//go:build !luling_full

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/internal/testenv"
)

const pluginDevice = `  - id: meter-1
    driver: plugin
    options: {path: /opt/luling/plugins/meter, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}
`

const pluginRule = `rules:
  - name: tidy
    plugin: {path: /opt/luling/plugins/tidy, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}
`

// fakeFull puts an executable gatewayd-full in a temporary directory and
// points LULING_GATEWAYD_FULL at it; body is its shell script. execFull
// is replaced for the test: the calls it gets are returned.
func fakeFull(t *testing.T, body string) (path string, calls *[][]string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), fullName)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LULING_GATEWAYD_FULL", path)
	calls = new([][]string)
	old := execFull
	execFull = func(p string, args []string) error {
		*calls = append(*calls, append([]string{p}, args...))
		return nil
	}
	t.Cleanup(func() { execFull = old })
	return path, calls
}

func TestUsesPluginsNamesDevicesAndRules(t *testing.T) {
	p := writeConfig(t, goodConfig+pluginDevice+pluginRule)
	cfg, err := load(p)
	if err != nil {
		t.Fatal(err)
	}
	got := usesPlugins(cfg)
	want := []string{"device meter-1 (line 12)", "rule tidy (line 16)"}
	if !slices.Equal(got, want) {
		t.Fatalf("usesPlugins = %q, want %q", got, want)
	}
	plain, err := load(writeConfig(t, goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := usesPlugins(plain); len(got) != 0 || needsFull(plain) {
		t.Fatalf("a config without plugins needs %q", got)
	}
}

// A config with plugins, run or checked by the default gatewayd, is
// handed to gatewayd-full with the same arguments; one without is not.
func TestPluginConfigHandsOverToFull(t *testing.T) {
	full, calls := fakeFull(t, "exit 0")
	p := writeConfig(t, goodConfig+pluginDevice)
	for _, args := range [][]string{{"-config", p}, {"-check", "-config", p}} {
		*calls = nil
		err := run(context.Background(), args, new(bytes.Buffer), new(bytes.Buffer))
		if !errors.Is(err, errHandedOver) {
			t.Fatalf("run %q: %v, want a hand-over", args, err)
		}
		if want := append([]string{full}, args...); len(*calls) != 1 || !slices.Equal((*calls)[0], want) {
			t.Fatalf("run %q: exec calls %q, want %q", args, *calls, want)
		}
	}
	*calls = nil
	if err := run(context.Background(), []string{"-check", "-config", writeConfig(t, goodConfig)}, new(bytes.Buffer), new(bytes.Buffer)); err != nil {
		t.Fatalf("check without plugins: %v", err)
	}
	if len(*calls) != 0 {
		t.Fatalf("a config without plugins was handed over: %q", *calls)
	}
}

// Without gatewayd-full the error names what needs it and how to get it.
func TestPluginConfigWithoutFullSaysWhatAndHow(t *testing.T) {
	missing := filepath.Join(t.TempDir(), fullName)
	t.Setenv("LULING_GATEWAYD_FULL", missing)
	p := writeConfig(t, goodConfig+pluginDevice)
	err := run(context.Background(), []string{"-config", p}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil {
		t.Fatal("started without gatewayd-full")
	}
	for _, want := range []string{p, "device meter-1 (line 12)", missing, "-tags luling_full", "LULING_GATEWAYD_FULL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// A reload that brings plugins in is checked by gatewayd-full -check (its
// errors refuse the reload) and then hands the process over to it.
func TestReloadIntoPluginsHandsOver(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 1, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	base := fmt.Sprintf("site: s\ngateway: g\nuplink: {brokers: [tcp://127.0.0.1:%d]}\noutbox: {path: %s}\nstatus: {listen: \"\"}\n"+
		"buses:\n  - {name: rs485-1, port: %s, parity: even}\ndevices:\n  - {id: bay-1, driver: modbus, bus: rs485-1, unit: 1, profile: ultrasonic-bay}\n",
		testenv.FreePort(t), filepath.Join(dir, "outbox"), lot.Buses()[0].Path)
	if err := os.WriteFile(path, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The fake gatewayd-full refuses configs that contain "refuse-me".
	full, calls := fakeFull(t, `if grep -q refuse-me "$3"; then echo "gatewayd-full: $3:9:5: plugin refuse-me: no such file" >&2; exit 1; fi; exit 0`)
	started := make(chan *gateway.Gateway, 4)
	args := []string{"-config", path}
	sup := &supervisor{path: path, args: args, stderr: io.Discard, reload: make(chan struct{}, 1), started: func(g *gateway.Gateway) { started <- g }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sup.run(ctx, cfg) }()
	<-started

	if err := os.WriteFile(path, []byte(base+strings.Replace(pluginDevice, "/meter", "/refuse-me", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sup.requestReload(ctx); err == nil || !strings.Contains(err.Error(), path+":9:5") || !strings.Contains(err.Error(), full) {
		t.Fatalf("want gatewayd-full's refusal with file and line, got %v", err)
	}
	if err := os.WriteFile(path, []byte(base+pluginDevice), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sup.requestReload(ctx); err != nil {
		t.Fatalf("reload refused: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errHandedOver) {
			t.Fatalf("run ended with %v, want a hand-over", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no hand-over 30 s after the reload")
	}
	if want := append([]string{full}, args...); len(*calls) != 1 || !slices.Equal((*calls)[0], want) {
		t.Fatalf("exec calls %q, want %q", *calls, want)
	}
}
