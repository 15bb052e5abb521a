package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// notifySocket listens where systemd would and returns what gatewayd says.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// expect waits for a datagram starting with want, skipping others.
func expect(t *testing.T, ch <-chan string, want string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from gatewayd", want)
		}
	}
}

// TestSystemdNotify: under a Type=notify unit gatewayd says READY=1 once
// its bus is open, pets the watchdog while it polls, announces a SIGHUP
// reload (RELOADING=1, then READY=1 for the new gateway) and STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 1, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	body := fmt.Sprintf("site: s\ngateway: g\nuplink: {brokers: [tcp://127.0.0.1:%d]}\noutbox: {path: %s}\nstatus: {listen: \"\"}\n"+
		"buses:\n  - {name: rs485-1, port: %s, parity: even}\ndevices:\n  - {id: bay-1, driver: modbus, bus: rs485-1, unit: 1, profile: ultrasonic-bay, poll: 100ms}\n",
		testenv.FreePort(t), filepath.Join(dir, "outbox"), lot.Buses()[0].Path)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, ch := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-config", cfg}, io.Discard, io.Discard) }()
	defer func() {
		cancel()
		<-done
	}()
	if m := expect(t, ch, "READY=1"); !strings.Contains(m, "STATUS=running") || strings.Contains(m, "not open") {
		t.Errorf("ready message %q, want the bus open", m)
	}
	for range 3 {
		expect(t, ch, "WATCHDOG=1")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, "RELOADING=1")
	expect(t, ch, "READY=1")
	expect(t, ch, "WATCHDOG=1")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	done <- nil
	expect(t, ch, "STOPPING=1")
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"30000000", "", 30 * time.Second},
		{"30000000", "42", 30 * time.Second},
		{"30000000", "43", 0}, // meant for another process
		{"", "", 0},
		{"-5", "", 0},
		{"abc", "", 0},
	} {
		if got := watchdogInterval(c.usec, c.pid, 42); got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", c.usec, c.pid, got, c.want)
		}
	}
}
