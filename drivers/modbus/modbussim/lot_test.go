package modbussim

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
)

func newLot(t *testing.T, cfg LotConfig) *Lot {
	t.Helper()
	l, err := NewLot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// port opens a bus's path as the gateway does.
func port(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func ask(t *testing.T, f *os.File, req []byte, n int) []byte {
	t.Helper()
	if _, err := f.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, n)
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(f, buf); err != nil {
		t.Fatalf("read %d-byte reply to % X: %v", n, req, err)
	}
	if !modbus.CheckCRC(buf) {
		t.Fatalf("reply % X: bad CRC", buf)
	}
	return buf
}

// log strips the wall-clock time, which no seed reproduces.
func simLog(cs []Change) []Change {
	out := make([]Change, len(cs))
	for i, c := range cs {
		c.At = time.Time{}
		out[i] = c
	}
	return out
}

func TestLotLayout(t *testing.T) {
	l := newLot(t, LotConfig{Bays: 7, Buses: 2, Ultrasonic: 0.5, Seed: 1, Line: Line{Baud: 115200}})
	bus := l.Buses()
	if len(bus) != 2 || bus[0].FirstBay != 1 || bus[0].LastBay != 4 || bus[1].FirstBay != 5 || bus[1].LastBay != 7 {
		t.Fatalf("buses %+v, want bays 1..4 and 5..7", bus)
	}
	if bus[0].Name != "rs485-1" || bus[1].Name != "rs485-2" || !bus[0].Plugged {
		t.Errorf("bus names/plugged %+v", bus)
	}
	want := []BayInfo{
		{1, 0, 1, Ultrasonic}, {2, 0, 2, Geomagnetic}, {3, 0, 3, Ultrasonic}, {4, 0, 4, Geomagnetic},
		{5, 1, 1, Ultrasonic}, {6, 1, 2, Geomagnetic}, {7, 1, 3, Ultrasonic},
	}
	if got := l.Bays(); !equal(got, want) {
		t.Errorf("bays %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		share float64
		ultra int
	}{{0, 0}, {1, 7}, {0.25, 2}} {
		l := newLot(t, LotConfig{Bays: 7, Ultrasonic: c.share, Line: Line{Baud: 115200}})
		n := 0
		for _, b := range l.Bays() {
			if b.Model == Ultrasonic {
				n++
			}
		}
		if n != c.ultra {
			t.Errorf("share %v: %d ultrasonic sensors of 7, want %d", c.share, n, c.ultra)
		}
	}
	for _, bad := range []LotConfig{{Bays: 0}, {Bays: 3, Buses: 4}, {Bays: 500}, {Bays: 4, Ultrasonic: 1.5}, {Bays: 4, Speed: -1}} {
		if _, err := NewLot(bad); err == nil {
			t.Errorf("NewLot(%+v) accepted", bad)
		}
	}
}

func TestLotDeterministic(t *testing.T) {
	script := func(seed uint64) []Change {
		l := newLot(t, LotConfig{Bays: 12, Buses: 3, Seed: seed, Ultrasonic: 0.5, Line: Line{Baud: 115200}})
		l.Advance(3 * time.Hour)
		if err := l.SetOccupied(5, !mustOcc(t, l, 5)); err != nil {
			t.Fatal(err)
		}
		l.Pause()
		l.Advance(time.Hour)
		l.Resume()
		l.Advance(3 * time.Hour)
		return simLog(l.Changes())
	}
	a, b := script(42), script(42)
	if len(a) < 50 {
		t.Fatalf("only %d changes in 7 simulated hours on 12 bays", len(a))
	}
	if !equal(a, b) {
		t.Fatalf("same seed, different change logs:\n%v\n%v", a, b)
	}
	if c := script(43); equal(a, c) {
		t.Error("seeds 42 and 43 gave the same change log")
	}
	// Nothing changes while the process is paused, and each bay alternates.
	last := map[int]bool{}
	manual := 0
	for _, c := range a {
		if c.Sim > 3*time.Hour && c.Sim < 4*time.Hour {
			t.Errorf("change %+v while paused", c)
		}
		if prev, ok := last[c.Bay]; ok && prev == c.Occupied || !ok && !c.Occupied {
			t.Errorf("bay %d changed to occupied=%v twice in a row", c.Bay, c.Occupied)
		}
		last[c.Bay] = c.Occupied
		if c.Manual {
			manual++
			if c.Bay != 5 || c.Bus != 1 || c.Unit != 1 {
				t.Errorf("manual change %+v, want bay 5 = unit 1 on bus 1", c)
			}
		}
	}
	if manual != 1 {
		t.Errorf("%d manual changes logged, want 1", manual)
	}
}

func mustOcc(t *testing.T, l *Lot, bay int) bool {
	t.Helper()
	occ, err := l.Occupied(bay)
	if err != nil {
		t.Fatal(err)
	}
	return occ
}

func TestLotOverThePort(t *testing.T) {
	dir := t.TempDir()
	l := newLot(t, LotConfig{Bays: 4, Buses: 1, Ultrasonic: 0.5, Seed: 7, Dir: dir, Line: Line{Baud: 115200}})
	link := filepath.Join(dir, "ttyBUS0")
	if p := l.Buses()[0].Path; p != link {
		t.Fatalf("bus path %q, want the link %q", p, link)
	}
	f := port(t, link)

	// Bay 1, ultrasonic: a car arrives.
	must(t, l.SetOccupied(1, true))
	r := ask(t, f, modbus.AppendCRC([]byte{1, 0x03, 0, 0, 0, 6}), 17)
	status, dist := be16(r[3:]), be16(r[5:])
	if status&StatusOccupied == 0 || dist < 98 || dist > 152 {
		t.Errorf("occupied ultrasonic bay: status %04X distance %d cm, want the occupied bit and 100..150 cm", status, dist)
	}
	if thr, addr := be16(r[9:]), be16(r[13:]); thr != DefaultThreshold || addr != 1 {
		t.Errorf("threshold %d, address %d; want %d and 1", thr, addr, DefaultThreshold)
	}
	// The gateway turns the LED red.
	ask(t, f, modbus.AppendCRC([]byte{1, 0x06, 0, UltrasonicLED, 0, LEDRed}), 8)
	if led, _ := l.LED(1); led != LEDRed {
		t.Errorf("LED %d after writing red, want %d", led, LEDRed)
	}
	// Read-only registers and bad colours are refused.
	if r := ask(t, f, modbus.AppendCRC([]byte{1, 0x06, 0, UltrasonicDistance, 0, 1}), 5); r[1] != 0x86 || r[2] != byte(IllegalDataAddress) {
		t.Errorf("write to the distance register: % X, want exception 02", r)
	}
	if r := ask(t, f, modbus.AppendCRC([]byte{1, 0x06, 0, UltrasonicLED, 0, 9}), 5); r[1] != 0x86 || r[2] != byte(IllegalDataValue) {
		t.Errorf("LED colour 9: % X, want exception 03", r)
	}
	// A threshold below the car's distance makes the sensor report free.
	ask(t, f, modbus.AppendCRC([]byte{1, 0x10, 0, UltrasonicLED, 0, 2, 4, 0, LEDGreen, 0, 50}), 8)
	r = ask(t, f, modbus.AppendCRC([]byte{1, 0x03, 0, 0, 0, 1}), 7)
	if be16(r[3:])&StatusOccupied != 0 {
		t.Error("occupied bit still set with a 50 cm threshold")
	}

	// Bay 2, geomagnetic: free, then a car, then a failed detector.
	r = ask(t, f, modbus.AppendCRC([]byte{2, 0x04, 0, 0, 0, 6}), 17)
	freeZ := int16(be16(r[9:]))
	if st, batt := be16(r[3:]), be16(r[11:]); st != GeoFree || batt < 300 || batt > 370 {
		t.Errorf("free geomagnetic bay: state %d battery %d", st, batt)
	}
	must(t, l.SetOccupied(2, true))
	r = ask(t, f, modbus.AppendCRC([]byte{2, 0x04, 0, 0, 0, 6}), 17)
	if st, z := be16(r[3:]), int16(be16(r[9:])); st != GeoOccupied || abs(int(z)-int(freeZ)) < 140 {
		t.Errorf("occupied geomagnetic bay: state %d, Z %d (free %d): want state 1 and a disturbance", st, z, freeZ)
	}
	l.Sensor(2).SetFault(true)
	r = ask(t, f, modbus.AppendCRC([]byte{2, 0x04, 0, 0, 0, 1}), 7)
	if be16(r[3:]) != GeoFailed {
		t.Errorf("failed detector: state %d, want %d", be16(r[3:]), GeoFailed)
	}
	// A geomagnetic sensor has no holding registers.
	if r := ask(t, f, modbus.AppendCRC([]byte{2, 0x03, 0, 0, 0, 1}), 5); r[1] != 0x83 || r[2] != byte(IllegalDataAddress) {
		t.Errorf("FC03 on a geomagnetic sensor: % X, want exception 02", r)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestLotUnplugReplug(t *testing.T) {
	dir := t.TempDir()
	l := newLot(t, LotConfig{Bays: 2, Buses: 1, Ultrasonic: 1, Dir: dir, Line: Line{Baud: 115200}})
	link := l.Buses()[0].Path
	f := port(t, link)
	ask(t, f, modbus.AppendCRC([]byte{2, 0x06, 0, UltrasonicLED, 0, LEDYellow}), 8)

	must(t, l.Unplug(0))
	if l.Buses()[0].Plugged {
		t.Error("bus still plugged in after Unplug")
	}
	// The gateway's port fails: the pty is gone.
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := f.Write(modbus.AppendCRC([]byte{2, 0x03, 0, 2, 0, 1})); err == nil {
		buf := make([]byte, 7)
		if _, err := io.ReadFull(f, buf); err == nil {
			t.Fatalf("read a reply % X from an unplugged bus", buf)
		}
	}
	if _, err := os.Stat(link); err == nil {
		t.Error("the link survived the unplug")
	}
	if err := l.Replug(0); err != nil {
		t.Fatal(err)
	}
	g := port(t, link)
	r := ask(t, g, modbus.AppendCRC([]byte{2, 0x03, 0, UltrasonicLED, 0, 1}), 7)
	if !bytes.Equal(r[3:5], []byte{0, LEDYellow}) {
		t.Errorf("LED after replug % X, want yellow kept", r[3:5])
	}
	if err := l.Replug(0); err == nil {
		t.Error("Replug of a plugged bus succeeded")
	}
}

func TestLotRun(t *testing.T) {
	l := newLot(t, LotConfig{Bays: 4, Seed: 3, MeanFree: time.Minute, MeanStay: time.Minute, Speed: 3600, Line: Line{Baud: 115200}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	// At an hour per second, four bays with one-minute means change often.
	deadline := time.Now().Add(20 * time.Second)
	for len(l.Changes()) < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(l.Changes()); n < 10 {
		t.Fatalf("%d changes in 20 s at 3600x, want at least 10", n)
	}
	// Sim times never go backwards.
	cs := l.Changes()
	for i := 1; i < len(cs); i++ {
		if cs[i].Sim < cs[i-1].Sim {
			t.Fatalf("change %d at %v before change %d at %v", i, cs[i].Sim, i-1, cs[i-1].Sim)
		}
	}
}
