package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/internal/testenv"
)

// A reload with an invalid config is refused with its errors and the
// running gateway goes on; a valid one restarts the gateway with it.
func TestReloadKeepsRunningConfigWhenNewOneIsBad(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(devices int, profile string) {
		var b strings.Builder
		fmt.Fprintf(&b, "site: s\ngateway: g\nuplink: {brokers: [tcp://127.0.0.1:%d]}\noutbox: {path: %s}\nstatus: {listen: \"\"}\n",
			testenv.FreePort(t), filepath.Join(dir, "outbox"))
		fmt.Fprintf(&b, "buses:\n  - {name: rs485-1, port: %s, parity: even}\ndevices:\n", lot.Buses()[0].Path)
		for i := 1; i <= devices; i++ {
			fmt.Fprintf(&b, "  - {id: bay-%d, driver: modbus, bus: rs485-1, unit: %d, profile: %s}\n", i, i, profile)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1, "ultrasonic-bay")
	cfg, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan *gateway.Gateway, 4)
	sup := &supervisor{path: path, stderr: io.Discard, reload: make(chan struct{}, 1), started: func(g *gateway.Gateway) { started <- g }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	first := <-started

	write(2, "no-such-profile")
	err = sup.requestReload(ctx)
	if err == nil || !strings.Contains(err.Error(), path+":9:") || !strings.Contains(err.Error(), "no-such-profile") {
		t.Fatalf("want the new config's errors with file and line, got %v", err)
	}
	select {
	case <-started:
		t.Fatal("the gateway restarted on an invalid config")
	case <-time.After(2 * time.Second):
	}
	if n := len(first.Snapshot().Devices); n != 1 {
		t.Fatalf("running gateway has %d devices, want the old config's 1", n)
	}

	write(2, "ultrasonic-bay")
	if err := sup.requestReload(ctx); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	select {
	case second := <-started:
		if n := len(second.Snapshot().Devices); n != 2 {
			t.Fatalf("reloaded gateway has %d devices, want 2", n)
		}
		// Uptime counts from the process's start, not the reload's.
		if a, b := first.Snapshot().Started, second.Snapshot().Started; !a.Equal(b) {
			t.Errorf("started moved from %v to %v on reload: uptime_seconds reset", a, b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not restart with the valid config")
	}
}
