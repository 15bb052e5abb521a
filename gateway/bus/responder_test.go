package bus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/internal/ptypair"

	"github.com/luling-edge/luling/internal/testenv"
)

// The test protocol: a request is reqLen bytes
//
//	unit, seq, ^seq, 0xA0|unit&0x0f, 0x55, 0xAA, unit, seq
//
// and its reply is unit, n, n bytes of payload (seq repeated n times,
// n = 1 + seq%5). A broadcast is a request to unit 0, which no one answers.
const reqLen = 8

func request(unit, seq byte) []byte {
	return []byte{unit, seq, ^seq, 0xA0 | unit&0x0f, 0x55, 0xAA, unit, seq}
}

func validRequest(r []byte) bool {
	return len(r) == reqLen && r[2] == ^r[1] && r[3] == 0xA0|r[0]&0x0f &&
		r[4] == 0x55 && r[5] == 0xAA && r[6] == r[0] && r[7] == r[1]
}

func reply(unit, seq byte) []byte {
	n := 1 + int(seq)%5
	out := []byte{unit, byte(n)}
	for range n {
		out = append(out, seq)
	}
	return out
}

// frameLen finds the end of a reply from unit.
func frameLen(unit byte) drivers.FrameLenFunc {
	return func(p []byte) (int, error) {
		if p[0] != unit {
			return 0, fmt.Errorf("reply from unit %d, expected unit %d", p[0], unit)
		}
		if len(p) < 2 {
			return 0, nil
		}
		return 2 + int(p[1]), nil
	}
}

// seen is one request as the responder received it.
type seen struct {
	req     []byte
	arrived time.Time // when its first byte was read
	// sinceLast is the time from the start of the last traffic the
	// responder knows of (its last reply's write, or the arrival of the
	// last request that got no reply) to this request's arrival.
	sinceLast time.Duration
}

// responder plays the devices on the master side of a pty pair.
type responder struct {
	t testing.TB
	// m is the master side, duplicated and non-blocking so that closing
	// it interrupts a pending read (the pty's own master file blocks).
	m *os.File

	mu       sync.Mutex
	silent   map[byte]bool          // units that never answer
	hold     map[byte]chan struct{} // units that answer once the channel closes
	split    time.Duration          // pause in the middle of each reply
	log      []seen
	problems []string
	arrivals chan byte // unit of every request, when not nil
	done     chan struct{}
}

func newResponder(t testing.TB, pair *ptypair.Pair) *responder {
	rc, err := pair.Master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	nfd := -1
	rc.Control(func(fd uintptr) { nfd, err = unix.Dup(int(fd)) })
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		t.Fatal(err)
	}
	r := &responder{t: t, m: os.NewFile(uintptr(nfd), pair.Master.Name()), silent: map[byte]bool{}, hold: map[byte]chan struct{}{}, done: make(chan struct{})}
	go r.run()
	return r
}

func (r *responder) setSilent(unit byte, silent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.silent[unit] = silent
}

// stop ends the responder and closes its side of the line.
func (r *responder) stop() {
	r.m.Close()
	<-r.done
}

func (r *responder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// pending is the number of bytes waiting on the master side.
func (r *responder) pending() int {
	rc, err := r.m.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
		if err == nil {
			n = v
		}
	})
	return n
}

func (r *responder) run() {
	defer close(r.done)
	m := r.m
	var last time.Time
	buf := make([]byte, reqLen)
	for {
		if _, err := io.ReadFull(m, buf[:1]); err != nil {
			return
		}
		arrived := time.Now()
		if _, err := io.ReadFull(m, buf[1:]); err != nil {
			return
		}
		req := append([]byte(nil), buf...)
		if !validRequest(req) {
			r.problem("garbled request % x (interleaved writes?)", req)
		}
		s := seen{req: req, arrived: arrived}
		if !last.IsZero() {
			s.sinceLast = arrived.Sub(last)
		}
		r.mu.Lock()
		r.log = append(r.log, s)
		silent, hold, split, arrivals := r.silent[req[0]], r.hold[req[0]], r.split, r.arrivals
		r.mu.Unlock()
		if arrivals != nil {
			arrivals <- req[0]
		}
		if req[0] == 0 || silent {
			last = arrived
			continue
		}
		if hold != nil {
			<-hold
		}
		if n := r.pending(); n != 0 {
			r.problem("%d more bytes arrived during the transaction of % x", n, req)
		}
		rep := reply(req[0], req[1])
		last = time.Now()
		if split > 0 {
			if _, err := m.Write(rep[:1]); err != nil {
				return
			}
			time.Sleep(split) // plays a device that sends its reply in two pieces
			rep = rep[1:]
		}
		if _, err := m.Write(rep); err != nil {
			return
		}
	}
}

// requests returns what the responder received so far.
func (r *responder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.log...)
}

func (r *responder) check() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		r.t.Error("responder: " + p)
	}
}

// line is a pty pair with a responder on its master side.
type line struct {
	pair *ptypair.Pair
	resp *responder
	link string
}

func newLine(t testing.TB) *line {
	t.Helper()
	link := filepath.Join(t.TempDir(), "ttyRS485")
	pair, err := ptypair.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	l := &line{pair: pair, link: link}
	l.resp = newResponder(t, pair)
	t.Cleanup(func() {
		l.unplug()
		l.resp.check()
	})
	return l
}

// unplug closes the line as if its adapter were pulled out.
func (l *line) unplug() {
	l.resp.stop()
	l.pair.Close()
}

// startBus makes a bus on path, runs it and waits for its port to open.
func startBus(t testing.TB, cfg bus.Config, opts bus.Options) *bus.Bus {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "rs485-1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := bus.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitReady(t, b)
	return b
}

// waitReady waits for b's port to open; the limit only stops a hung test.
func waitReady(t testing.TB, b *bus.Bus) {
	t.Helper()
	select {
	case <-b.Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("bus %s: the port did not open", b.Name())
	}
}

// waitFor polls cond; the limit is generous and only stops a hung test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, what, cond)
}

// fakeClock is a manual clock for back-off.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)) }

func isBackoff(err error) bool {
	return errors.Is(err, bus.ErrBackoff) && errors.Is(err, drivers.ErrTimeout)
}
