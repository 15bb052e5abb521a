package testenv

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers every byte with itself and counts what it received.
func echoServer(t *testing.T) (addr string, received *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	received = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					received.Add(int64(n))
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), received
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func TestProxyForwardsCutsAndBlackHoles(t *testing.T) {
	target, received := echoServer(t)
	p := NewProxy(t, target)

	c1, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	roundTrip(t, c1, "hello")

	// Cut: the open connection ends and a new one is refused.
	p.Cut()
	c1.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c1.Read(make([]byte, 8)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a cut connection: %d bytes, %v; want it closed", n, err)
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("a connection through a cut proxy was accepted")
	}

	// Restore: the same address forwards again.
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial after Restore: %v", err)
	}
	defer c2.Close()
	roundTrip(t, c2, "again")

	// Black hole: writes succeed, the server gets nothing, nothing comes
	// back, and the connection stays open; a new one is accepted and
	// swallowed too.
	p.BlackHole()
	before := received.Load()
	if _, err := c2.Write([]byte("lost")); err != nil {
		t.Fatalf("write into the black hole: %v", err)
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial into the black hole: %v", err)
	}
	defer c3.Close()
	if _, err := c3.Write([]byte("gone too")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "the proxy swallowed both writes", func() bool {
		return p.Stats().Discarded >= uint64(len("lost")+len("gone too"))
	})
	if got := received.Load(); got != before {
		t.Fatalf("the server received %d bytes through the black hole", got-before)
	}
	for _, c := range []net.Conn{c2, c3} {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from the black hole: %d bytes, %v; want nothing and the connection open", n, err)
		}
	}

	// Restore: the black-holed connections are closed, new ones work.
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c2.Read(make([]byte, 8)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a black-holed connection was not closed on Restore: %v", err)
	}
	c4, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	roundTrip(t, c4, "back")
	if st := p.Stats(); st.Accepted != 4 || st.Forwarded < uint64(2*len("helloagainback")) {
		t.Fatalf("stats %+v: want 4 accepted and every echo counted", st)
	}
}

// A connection made while the server is down is closed at once, and the
// next one after the server is back reaches it.
func TestProxyRedialsTheTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := NewProxy(t, target)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection to a dead server stayed open: %v", err)
	}
	c.Close()

	ln, err = net.Listen("tcp", target)
	if err != nil {
		t.Skipf("the target port was taken meanwhile: %v", err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err == nil {
			io.Copy(s, s)
			s.Close()
		}
	}()
	c, err = net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "up")
}
