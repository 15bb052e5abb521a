package serialport_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/luling-edge/luling/gateway/serialport"
)

func writeReader(t *testing.T, p serialport.Port) serialport.WriteReader {
	t.Helper()
	wr, ok := p.(serialport.WriteReader)
	if !ok {
		t.Fatalf("%T is not a WriteReader on Linux", p)
	}
	return wr
}

// answer makes the other end of the line answer every request at once
// with its bytes reversed, until the test ends.
func answer(pair interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}) {
	go func() {
		buf, out := make([]byte, 64), make([]byte, 64)
		for {
			n, err := pair.Read(buf)
			if err != nil {
				return
			}
			for i := range n {
				out[i] = buf[n-1-i]
			}
			if _, err := pair.Write(out[:n]); err != nil {
				return
			}
		}
	}()
}

// WriteRead sends the request and returns the reply even when the other
// end answers at once: the reply's wake-up is never lost (a lost one
// would come back as io.EOF after ReadTimeout).
func TestWriteReadReturnsAnImmediateReply(t *testing.T) {
	pair, p := openPair(t)
	wr := writeReader(t, p)
	answer(pair.Master)
	reply := make([]byte, 16)
	for i := range 200 {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		req := []byte{byte(i), 'a', 'b'}
		n, err := wr.WriteRead(req, reply)
		if err != nil || n == 0 {
			t.Fatalf("request %d: WriteRead = (%d, %v), want the reply's first bytes", i, n, err)
		}
		got := append([]byte(nil), reply[:n]...)
		got = append(got, readFull(t, p, 3-n, 20)...)
		if want := []byte{'b', 'a', byte(i)}; !bytes.Equal(got, want) {
			t.Fatalf("request %d: reply % x, want % x", i, got, want)
		}
	}
}

// With nobody answering, WriteRead writes the request and comes back with
// io.EOF after the read timeout, as Read does.
func TestWriteReadWithoutReplyTimesOut(t *testing.T) {
	pair, p := openPair(t)
	n, err := writeReader(t, p).WriteRead([]byte("req"), make([]byte, 8))
	if n != 0 || err != io.EOF {
		t.Fatalf("WriteRead with no reply = (%d, %v), want (0, io.EOF)", n, err)
	}
	buf := make([]byte, 8)
	k, err := pair.Master.Read(buf)
	if err != nil || string(buf[:k]) != "req" {
		t.Fatalf("the other end read (%q, %v), want the request", buf[:k], err)
	}
}

// On an unplugged line WriteRead fails with an I/O error naming the port.
func TestWriteReadOnUnpluggedLineFails(t *testing.T) {
	pair, p := openPair(t)
	pair.Close()
	_, err := writeReader(t, p).WriteRead([]byte("req"), make([]byte, 8))
	if err == nil || err == io.EOF {
		t.Fatalf("WriteRead after unplug = %v, want an I/O error", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(pair.Path())) {
		t.Errorf("error %q does not name the port", err)
	}
}

func TestFlushAndWriteReadDoNotAllocate(t *testing.T) {
	pair, p := openPair(t)
	wr := writeReader(t, p)
	answer(pair.Master)
	buf, req := make([]byte, 16), []byte{1}
	allocs := testing.AllocsPerRun(20, func() {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if n, err := wr.WriteRead(req, buf); n != 1 || err != nil {
			t.Fatalf("WriteRead = (%d, %v), want 1 byte", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Flush+WriteRead allocate %v times, want 0", allocs)
	}
}
