package serialport_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
)

func openPair(t *testing.T) (*ptypair.Pair, serialport.Port) {
	t.Helper()
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyTEST"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	p, err := serialport.Open(serialport.Config{Name: pair.Path(), Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return pair, p
}

// readFull reads n bytes, tolerating read timeouts (at most tries of them).
func readFull(t *testing.T, p serialport.Port, n, tries int) []byte {
	t.Helper()
	buf := make([]byte, 0, n)
	tmp := make([]byte, n)
	for len(buf) < n && tries > 0 {
		k, err := p.Read(tmp[:n-len(buf)])
		if err == io.EOF {
			tries--
			continue
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		buf = append(buf, tmp[:k]...)
	}
	return buf
}

func TestReadWriteOverPty(t *testing.T) {
	pair, p := openPair(t)
	req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd}
	if _, err := p.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(req))
	if _, err := io.ReadFull(pair.Master, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, req) {
		t.Fatalf("master got % x, want % x", got, req)
	}
	reply := []byte{0x01, 0x83, 0x02, 0xc0, 0xf1}
	if _, err := pair.Master.Write(reply); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, p, len(reply), 20); !bytes.Equal(got, reply) {
		t.Fatalf("port got % x, want % x", got, reply)
	}
}

func TestReadWithoutInputTimesOutWithEOF(t *testing.T) {
	_, p := openPair(t)
	n, err := p.Read(make([]byte, 16))
	if n != 0 || err != io.EOF {
		t.Fatalf("idle read = (%d, %v), want (0, io.EOF)", n, err)
	}
}

func TestFlushDiscardsStaleInput(t *testing.T) {
	pair, p := openPair(t)
	if _, err := pair.Master.Write([]byte("stale bytes")); err != nil {
		t.Fatal(err)
	}
	// The stale bytes must have reached the slave's input queue before
	// the flush; a read of one byte proves it.
	if got := readFull(t, p, 1, 20); string(got) != "s" {
		t.Fatalf("first byte %q, want %q", got, "s")
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := pair.Master.Write([]byte("fresh")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, p, 5, 20); string(got) != "fresh" {
		t.Fatalf("after flush read %q, want %q", got, "fresh")
	}
}

func TestUnpluggedLineFailsWithIOError(t *testing.T) {
	pair, p := openPair(t)
	path := pair.Path()
	pair.Close()
	_, rerr := p.Read(make([]byte, 4))
	if rerr == nil || rerr == io.EOF {
		t.Fatalf("read after unplug = %v, want an I/O error", rerr)
	}
	if !errors.Is(rerr, serialport.ErrHangup) {
		t.Errorf("read after unplug = %v, want ErrHangup", rerr)
	}
	if !strings.Contains(rerr.Error(), path) {
		t.Errorf("read error %q does not name the port %s", rerr, path)
	}
	if _, err := p.Write([]byte{1}); err == nil {
		t.Fatalf("write after unplug succeeded, want an I/O error")
	}
	if _, err := serialport.Open(serialport.Config{Name: path, Baud: 9600}); err == nil {
		t.Fatalf("open of vanished %s succeeded", path)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  serialport.Config
		want string // "" = valid
	}{
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600}, ""},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 19200, DataBits: 8, Parity: serialport.ParityEven, StopBits: 1}, ""},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600, Parity: serialport.ParityOdd, StopBits: 2, DataBits: 7}, ""},
		{serialport.Config{Baud: 9600}, "no device path"},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9601}, "baud 9601"},
		{serialport.Config{Name: "/dev/ttyUSB0"}, "baud 0"},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600, DataBits: 9}, "data bits 9"},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600, Parity: "mark"}, `parity "mark"`},
		{serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600, StopBits: 3}, "stop bits 3"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.cfg, err)
		case c.want != "" && err == nil:
			t.Errorf("%+v: no error, want %q", c.cfg, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%+v: error %q, want it to mention %q", c.cfg, err, c.want)
		}
		if c.want != "" && c.cfg.Name != "" && err != nil && !strings.Contains(err.Error(), c.cfg.Name) {
			t.Errorf("%+v: error %q does not name the port", c.cfg, err)
		}
	}
	if _, err := serialport.Open(serialport.Config{Name: "/dev/ttyUSB0", Baud: 9601}); err == nil {
		t.Error("Open accepted an invalid config")
	}
}

func TestBitsPerCharAndCharTime(t *testing.T) {
	cases := []struct {
		cfg  serialport.Config
		bits int
		char time.Duration
	}{
		{serialport.Config{Baud: 9600}, 10, 1041666 * time.Nanosecond},
		{serialport.Config{Baud: 9600, Parity: serialport.ParityEven}, 11, 1145833 * time.Nanosecond},
		{serialport.Config{Baud: 19200, StopBits: 2}, 11, 572916 * time.Nanosecond},
		{serialport.Config{Baud: 1200, DataBits: 7, Parity: serialport.ParityOdd, StopBits: 2}, 11, 9166666 * time.Nanosecond},
	}
	for _, c := range cases {
		if got := c.cfg.BitsPerChar(); got != c.bits {
			t.Errorf("%v: bits per char %d, want %d", c.cfg, got, c.bits)
		}
		if got := c.cfg.CharTime(); got != c.char {
			t.Errorf("%v: char time %v, want %v", c.cfg, got, c.char)
		}
	}
	if s := (serialport.Config{Name: "/dev/ttyS1", Baud: 9600, Parity: serialport.ParityEven}).String(); s != "9600 8E1" {
		t.Errorf("String() = %q", s)
	}
}

func TestOpenMissingNodeNamesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttyGONE")
	_, err := serialport.Open(serialport.Config{Name: path, Baud: 9600})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("open missing node: %v, want an error naming %s", err, path)
	}
	if !errors.Is(err, errNotExist()) {
		t.Errorf("open missing node: %v does not wrap ENOENT", err)
	}
}

func errNotExist() error { return fs.ErrNotExist }

// TestReadAfterFlushReturnsTheReply checks that the first Read after a
// Flush returns bytes that arrive before it waits and while it waits,
// rather than timing out (a Read that missed the line's wake-up would
// come back with io.EOF after ReadTimeout).
func TestReadAfterFlushReturnsTheReply(t *testing.T) {
	pair, p := openPair(t)
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		wrote := make(chan error, 1)
		write := func() { _, err := pair.Master.Write([]byte("reply")); wrote <- err }
		if delay == 0 {
			write()
		} else {
			time.AfterFunc(delay, write)
		}
		buf := make([]byte, 16)
		n, err := p.Read(buf)
		if err != nil || n == 0 {
			t.Fatalf("bytes written %v after the flush: first Read = (%d, %v), want the bytes", delay, n, err)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		got := append([]byte(nil), buf[:n]...)
		got = append(got, readFull(t, p, 5-n, 20)...)
		if string(got) != "reply" {
			t.Fatalf("read %q, want %q", got, "reply")
		}
	}
}

func TestReadAndFlushDoNotAllocate(t *testing.T) {
	pair, p := openPair(t)
	buf, one := make([]byte, 16), []byte{1}
	allocs := testing.AllocsPerRun(20, func() {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := pair.Master.Write(one); err != nil {
			t.Fatal(err)
		}
		if n, err := p.Read(buf); n != 1 || err != nil {
			t.Fatalf("Read = (%d, %v), want 1 byte", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Flush+Read allocate %v times, want 0", allocs)
	}
}
