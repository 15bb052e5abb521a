package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/firmware-config/config"

	"github.com/luling-edge/luling/internal/testenv"
)

// syncBuffer is written by other goroutines while the test reads it.
type syncBuffer = testenv.Buffer

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"garage"},
		{"parking", "--bays", "0"},
		{"parking", "--bays", "x"},
		{"parking", "--bays", "600", "--buses", "2"},
		{"parking", "--buses", "0"},
		{"parking", "--baud", "12345"},
		{"parking", "--format", "7X3"},
		{"parking", "--mix", "ultrasonic=1.5"},
		{"parking", "--mix", "radar=0.5"},
		{"parking", "--rate", "-1"},
		{"parking", "--speed", "0"},
		{"parking", "--site", "Demo Site"},
		{"parking", "--gateway", ""},
		{"parking", "extra"},
		{"parking", "--inverters", "-1"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("run %q = %v (exit %d), want a usage error and exit 2", args, err, exitCode(err))
			continue
		}
		if len(args) > 2 && !strings.Contains(err.Error(), args[1]) && args[1] != "--bays" {
			t.Errorf("run %q: error %q does not name the flag", args, err)
		}
	}
	if exitCode(errors.New("pty: no room")) != 1 || exitCode(nil) != 0 {
		t.Error("exit codes for a failure and success are not 1 and 0")
	}
}

func TestMix(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{{"ultrasonic=0.5", 0.5}, {"geomagnetic=0.25", 0.75}, {"ultrasonic=1", 1}, {"geomagnetic=1", 0}} {
		if got, err := parseMix(c.in); err != nil || got != c.want {
			t.Errorf("parseMix(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParkingRunsAndWritesConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gateway.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"parking", "--bays", "10", "--buses", "2", "--baud", "115200", "--seed", "5",
			"--dir", dir, "--speed", "3600", "--rate", "30", "--stay", "2m", "--mix", "ultrasonic=0.5",
			"--write-config", cfgPath, "--site", "test-site", "--gateway", "gw-07", "--broker", "tcp://127.0.0.1:1999"},
			&out, &errOut)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "wrote gateway config") {
		if time.Now().After(deadline) {
			t.Fatalf("no config written; stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	stdout := out.String()
	for _, want := range []string{
		filepath.Join(dir, "ttyBUS0"), filepath.Join(dir, "ttyBUS1"),
		"rs485-1", "units 1..5  bays 1..5", "units 1..5  bays 6..10",
		"- id: bay-006", "profile: ultrasonic-bay", "profile: geomagnetic-bay",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}

	// The written config passes the gateway's own loader.
	cfg, err := config.Load(cfgPath,
		config.KnownDrivers("modbus"), config.KnownProfiles("ultrasonic-bay", "geomagnetic-bay"), config.SkipFileChecks())
	if err != nil {
		t.Fatalf("the gateway rejects the written config: %v", err)
	}
	if s := cfg.Summary(); !strings.Contains(s, "test-site") {
		t.Logf("config summary: %s", s)
	}
	data, _ := os.ReadFile(cfgPath)
	for _, want := range []string{"site: test-site", "gateway: gw-07", `brokers: ["tcp://127.0.0.1:1999"]`, "stop_bits: 2", "parity: none",
		`tags: {lot: "demo-lot", zone: b, bay: "010"}`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}

	// Bay 7 (ultrasonic) is unit 2 on the second bus; its sensor answers there.
	f, err := os.OpenFile(filepath.Join(dir, "ttyBUS1"), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req := modbus.AppendCRC([]byte{2, 0x03, 0, modbussim.UltrasonicAddress, 0, 1})
	if _, err := f.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 7)
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(f, reply); err != nil {
		t.Fatalf("bay 7 did not answer: %v", err)
	}
	if want := modbus.AppendCRC([]byte{2, 0x03, 2, 0, 2}); !bytes.Equal(reply, want) {
		t.Errorf("bay 7 reply % X, want % X", reply, want)
	}

	// At an hour per second, cars come and go, and devsim says so.
	for !strings.Contains(errOut.String(), "car arrived") {
		if time.Now().After(deadline) {
			t.Fatalf("no arrival logged:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after its context ended")
	}
	if _, err := os.Lstat(filepath.Join(dir, "ttyBUS0")); err == nil {
		t.Error("the port link survived the shutdown")
	}
}

// With --inverters, SunSpec inverters answer on a bus of their own, and the
// written config has it and them.
func TestParkingWithInverters(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "gateway.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"parking", "--bays", "2", "--buses", "1", "--inverters", "2", "--baud", "115200", "--dir", dir, "--write-config", cfgPath}, &out, &errOut)
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 20*time.Second, "the config", func() bool { return strings.Contains(out.String(), "wrote gateway config") })
	if _, err := config.Load(cfgPath, config.KnownDrivers("modbus", "sunspec"), config.KnownProfiles("ultrasonic-bay", "geomagnetic-bay"), config.SkipFileChecks()); err != nil {
		t.Fatalf("the gateway rejects the written config: %v", err)
	}
	data, _ := os.ReadFile(cfgPath)
	for _, want := range []string{"name: rs485-pv", filepath.Join(dir, "ttyPV"), "id: inv-2\n    driver: sunspec\n    bus: rs485-pv\n    unit: 2"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}
	// Inverter 2 answers with the SunSpec marker at 40000.
	f, err := os.OpenFile(filepath.Join(dir, "ttyPV"), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(modbus.AppendCRC([]byte{2, 0x03, 0x9C, 0x40, 0, 2})); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 9)
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(f, reply); err != nil {
		t.Fatalf("inverter 2 did not answer: %v", err)
	}
	if want := modbus.AppendCRC([]byte{2, 0x03, 4, 'S', 'u', 'n', 'S'}); !bytes.Equal(reply, want) {
		t.Errorf("inverter 2 reply % X, want % X", reply, want)
	}
}

// With --sign-plugin and --guidance-plugin, a guidance sign per zone
// answers on a bus of its own, and the written config pins both plugins by
// their SHA-256 and has the zone-guidance rule write each zone's free bays
// to its sign.
func TestParkingWithSigns(t *testing.T) {
	dir := t.TempDir()
	sign, rule := filepath.Join(dir, "guidance-display"), filepath.Join(dir, "zone-guidance")
	os.WriteFile(sign, []byte("sign plugin"), 0o755)
	os.WriteFile(rule, []byte("rule plugin"), 0o755)
	var errOut bytes.Buffer
	if err := run(context.Background(), []string{"parking", "--bays", "4", "--buses", "2", "--dir", dir, "--sign-plugin", sign}, io.Discard, &errOut); !errors.Is(err, errUsage) {
		t.Errorf("--sign-plugin alone: %v, want a usage error", err)
	}
	cfgPath := filepath.Join(dir, "gateway.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut2 syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"parking", "--bays", "5", "--buses", "2", "--dir", dir, "--write-config", cfgPath,
			"--sign-plugin", sign, "--guidance-plugin", rule}, &out, &errOut2)
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, 20*time.Second, "the config", func() bool { return strings.Contains(out.String(), "wrote gateway config") })
	if _, err := config.Load(cfgPath, config.KnownDrivers("modbus", "plugin"), config.KnownProfiles("ultrasonic-bay", "geomagnetic-bay"), config.SkipFileChecks()); err != nil {
		t.Fatalf("the gateway rejects the written config: %v", err)
	}
	data, _ := os.ReadFile(cfgPath)
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	for _, want := range []string{
		"name: rs485-signs", filepath.Join(dir, "ttySIGN"),
		"id: sign-b\n    driver: plugin\n    bus: rs485-signs\n    unit: 2",
		`sha256: "` + sum("sign plugin") + `", config: {address: 2, max_count: 999}`,
		"trigger: {measurement: parking_bay}", `sha256: "` + sum("rule plugin") + `"`,
		`a: {sign: sign-a, capacity: 3, lot: "demo-lot"}`, `b: {sign: sign-b, capacity: 2, lot: "demo-lot"}`,
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "ttySIGN")); err != nil {
		t.Errorf("no sign bus: %v", err)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{arg}, &out, &errb); err != nil || out.String() != "devsim "+version+"\n" {
			t.Errorf("%s: stdout %q, stderr %q, %v", arg, out.String(), errb.String(), err)
		}
	}
}
