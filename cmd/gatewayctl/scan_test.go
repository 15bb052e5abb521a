package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/drivers/sunspec/sunspecsim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
)

func TestScanFindsTheBaysOnABus(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 3, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"scan", "-port", lot.Buses()[0].Path, "-parity", "even", "-units", "1-5", "-timeout", "100ms"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"unit   1: answers", "unit   2: answers", "unit   3: answers", "3 of 5 units answered"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "unit   4") {
		t.Errorf("unit 4 does not exist but was reported:\n%s", out.String())
	}
}

func TestScanUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"scan"}, {"scan", "-port", "/dev/x", "-units", "0-3"}, {"scan", "-port", "/dev/x", "-units", "a"}, {"scan", "-port", "/dev/x", "-baud", "1234"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errb.String())
		}
	}
}

func TestLotsReadsParkingLotPoints(t *testing.T) {
	in, db := testenv.NewDatabase(t)
	lines := "parking_lot,site=demo,gateway=gw-01,lot=north,zone=a capacity=32i,occupied=12i,free=20i\n" +
		"parking_lot,site=demo,gateway=gw-01,lot=north,zone=b capacity=32i,occupied=30i,free=2i\n"
	resp, err := http.Post(in.URL+"/write?db="+db, "text/plain", strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: HTTP %d", resp.StatusCode)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"lots", "-influx", in.URL, "-db", db}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"north            a              32       12       20", "north            b              32       30        2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if got := summarize([]lotRow{{lot: "north", zone: "a", capacity: 32, occupied: 12}, {lot: "north", zone: "b", capacity: 32, occupied: 30}}); got != "north: a 12/32 b 30/32 | total 42/64 occupied, 22 free" {
		t.Errorf("summary %q", got)
	}
	// A lot counted at its lanes: its total is the count, its sensor zone
	// shows beside it.
	if got := summarize([]lotRow{{lot: "east", capacity: 64, occupied: 20, source: "combined"}, {lot: "east", zone: "ev", capacity: 4, occupied: 3, source: "sensors"}}); got != "east: gates 20/64 ev 3/4 | total 20/64 occupied, 44 free" {
		t.Errorf("counted lot: %q", got)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

func TestScanListsSunSpecModels(t *testing.T) {
	srv, err := modbussim.NewServer(modbussim.Config{Name: "pv"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sunspecsim.New(srv, sunspecsim.Config{Unit: 2, Base: 40000}); err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "tty"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, pair.Master) }()
	defer func() { cancel(); pair.Close(); <-served }()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"scan", "-port", pair.Path(), "-units", "1-3", "-sunspec", "-timeout", "100ms"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"unit   2: answers", "40000", "103", "160", "1 of 3 units answered"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// absentGateway answers every 8-byte request on the pty master as a Modbus
// TCP/RTU gateway without the unit behind it: exception 0x0B (gateway
// target device failed to respond).
func absentGateway(t *testing.T) string {
	t.Helper()
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "tty"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := make([]byte, 0, 64)
		buf := make([]byte, 64)
		for {
			n, err := pair.Master.Read(buf)
			if err != nil {
				return
			}
			req = append(req, buf[:n]...)
			for len(req) >= 8 {
				reply := modbus.AppendCRC([]byte{req[0], req[1] | 0x80, 0x0B})
				if _, err := pair.Master.Write(reply); err != nil {
					return
				}
				req = req[8:]
			}
		}
	}()
	t.Cleanup(func() { pair.Close(); <-done })
	return pair.Path()
}

// A unit a Modbus gateway reports absent (exception 0x0B) is not a unit
// that answered; with none answering, scan exits 1.
func TestScanGatewayAbsentIsNotPresent(t *testing.T) {
	port := absentGateway(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"scan", "-port", port, "-units", "1-3", "-timeout", "100ms"}, &out, &errb)
	if code != exitFailed {
		t.Errorf("exit %d, want %d when no unit answered", code, exitFailed)
	}
	for _, want := range []string{"0 of 3 units answered", "unit   1: absent behind a Modbus gateway (exception 11)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// No unit at the scanned addresses: exit 1, not 0.
func TestScanNothingAnsweredExits1(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 1, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"scan", "-port", lot.Buses()[0].Path, "-units", "5-6", "-timeout", "50ms"}, &out, &errb)
	if code != exitFailed || !strings.Contains(out.String(), "0 of 2 units answered") {
		t.Errorf("exit %d, want %d:\n%s%s", code, exitFailed, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "no unit answered") {
		t.Errorf("no hint for a silent bus:\n%s", out.String())
	}
}

// Every reply garbled: the line settings are the likely cause, and scan
// says so.
func TestScanGarbledRepliesSuggestLineSettings(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	for u := 1; u <= 2; u++ {
		lot.Server(0).Unit(byte(u)).CorruptNext(100)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"scan", "-port", lot.Buses()[0].Path, "-units", "1-2", "-timeout", "100ms"}, &out, &errb)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	for _, want := range []string{"unit   1: garbled reply", "every reply was garbled", "-baud", "-parity"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// A missing port is named with the OS's reason.
func TestScanMissingPortNamesTheOSError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyUSB9")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"scan", "-port", missing}, &out, &errb)
	want := "open " + missing + ": no such file or directory"
	if code != exitFailed || !strings.Contains(errb.String(), want) {
		t.Errorf("exit %d, stderr %q: want exit %d and %q", code, errb.String(), exitFailed, want)
	}
}

// A long scan shows its progress and an estimate on stderr.
func TestScanShowsProgress(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 1, Buses: 1, Ultrasonic: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	var out, errb bytes.Buffer
	run(context.Background(), []string{"scan", "-port", lot.Buses()[0].Path, "-units", "1-30", "-timeout", "10ms"}, &out, &errb)
	if !strings.Contains(errb.String(), "scanned 25 of 30 units, 1 answered, about ") || !strings.Contains(errb.String(), " left") {
		t.Errorf("no progress on stderr:\n%s", errb.String())
	}
	if strings.Contains(out.String(), "scanned ") {
		t.Errorf("progress went to stdout:\n%s", out.String())
	}
}
