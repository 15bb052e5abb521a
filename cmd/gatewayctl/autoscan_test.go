package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/ptypair"
	"golang.org/x/sys/unix"
)

// gatedLine is a pty master that hands the simulator only what the
// gateway sent at the speed the devices use: it reads the speed the port
// was opened with from the terminal (on Linux a pty master's TCGETS
// returns its slave's termios), and drops what was sent at another, as a
// device's UART would. Parity cannot be told apart this way: Linux keeps
// no parity bits in a pty's termios.
type gatedLine struct {
	*os.File
	cflag uint32 // the CBAUD bits the devices need
}

func (g *gatedLine) Read(p []byte) (int, error) {
	for {
		n, err := g.File.Read(p)
		if err != nil || n == 0 {
			return n, err
		}
		if g.matches() {
			return n, nil
		}
	}
}

func (g *gatedLine) matches() bool {
	rc, err := g.File.SyscallConn()
	if err != nil {
		return false
	}
	var t *unix.Termios
	if err := rc.Control(func(fd uintptr) { t, err = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil || t == nil {
		return false
	}
	return t.Cflag&unix.CBAUD == g.cflag
}

// gatedLot serves two ultrasonic bays (units 1 and 2) that answer only at
// the given line settings.
func gatedLot(t *testing.T, cflag uint32) string {
	t.Helper()
	srv, err := modbussim.NewServer(modbussim.Config{Name: "gated"})
	if err != nil {
		t.Fatal(err)
	}
	for u := byte(1); u <= 2; u++ {
		if _, err := modbussim.NewSensor(srv, u, modbussim.Ultrasonic, 1); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "tty"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, &gatedLine{File: pair.Master, cflag: cflag}) }()
	t.Cleanup(func() { cancel(); pair.Close(); <-served })
	return pair.Path()
}

// scan -auto tries the usual settings in order, says which one answered,
// and scans the range with it. Devices at 19200 (found at the Modbus
// default 19200 8E1, the first tried) and at 38400 (fifth: the four
// before it stay silent).
func TestScanAutoFindsTheLineSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cflag   uint32
		line    string
		silence []string
	}{
		{"19200", unix.B19200, "19200 8E1", nil},
		{"38400", unix.B38400, "38400 8E1", []string{"auto: 19200 8E1: no answer", "auto: 9600 8E1: no answer", "auto: 9600 8N1: no answer", "auto: 19200 8N1: no answer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := gatedLot(t, tc.cflag)
			start := time.Now()
			code, out, errOut := runCmd(t, "scan", "-auto", "-port", port, "-units", "1-3", "-timeout", "100ms")
			if code != exitOK {
				t.Fatalf("exit %d:\n%s%s", code, out, errOut)
			}
			want := append(tc.silence, "auto: "+tc.line+": unit 1 answered", "line settings: "+tc.line,
				"unit   1: answers", "unit   2: answers", "2 of 3 units answered")
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Count(out, ": unit 1 answered") != 1 || strings.Count(out, "auto: ") != len(tc.silence)+1 {
				t.Errorf("more than one setting answered:\n%s", out)
			}
			t.Logf("found %s in %v", tc.line, time.Since(start).Round(time.Millisecond))
		})
	}
}

// Nothing answers at any setting: exit 1 and say so.
func TestScanAutoNothingAnswers(t *testing.T) {
	port := gatedLot(t, unix.B4800) // a setting -auto does not try
	code, out, errOut := runCmd(t, "scan", "-auto", "-port", port, "-units", "1", "-timeout", "50ms")
	if code != exitFailed || !strings.Contains(out, "no unit answered at any of 12 line settings") || strings.Contains(out, ": unit 1 answered") {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
	if strings.Count(out, "auto: ") != 12 {
		t.Errorf("want one line per setting tried:\n%s", out)
	}
}

// A long -auto search reports its progress with an estimate, counting the
// probes of every setting.
func TestScanAutoReportsProgress(t *testing.T) {
	port := gatedLot(t, unix.B9600) // second setting: 26 silent probes first
	code, out, errOut := runCmd(t, "scan", "-auto", "-port", port, "-units", "1-26", "-timeout", "50ms")
	if code != exitOK || !strings.Contains(out, "auto: 9600 8E1: unit 1 answered") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	total := len(autoLines) * 26
	if !strings.Contains(errOut, "scanned 25 of "+strconv.Itoa(total)+" probes, 0 answered, about ") || !strings.Contains(errOut, " left") {
		t.Errorf("no progress with an estimate on stderr:\n%s", errOut)
	}
}
