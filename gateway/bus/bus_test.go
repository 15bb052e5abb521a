package bus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
)

func TestSilence(t *testing.T) {
	cases := []struct {
		baud, bits int
		want       time.Duration
	}{
		{9600, 10, 3645833 * time.Nanosecond},
		{9600, 11, 4010416 * time.Nanosecond},
		{19200, 11, 2005208 * time.Nanosecond},
		{1200, 10, 29166666 * time.Nanosecond},
		{38400, 11, 1750 * time.Microsecond},
		{115200, 10, 1750 * time.Microsecond},
	}
	for _, c := range cases {
		if got := bus.Silence(c.baud, c.bits); got != c.want {
			t.Errorf("Silence(%d, %d) = %v, want %v", c.baud, c.bits, got, c.want)
		}
	}
	b, err := bus.New(bus.Config{Name: "rs485-1", Port: serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600, Parity: serialport.ParityEven}}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Silence(); got != 4010416*time.Nanosecond {
		t.Errorf("9600 8E1 bus silence %v, want 11-bit t3.5 4.010416ms", got)
	}
	b, err = bus.New(bus.Config{Name: "rs485-1", BitsPerChar: 11, Port: serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600}}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Silence(); got != 4010416*time.Nanosecond {
		t.Errorf("9600 8N1 bus with BitsPerChar 11: silence %v, want 4.010416ms", got)
	}
	b, err = bus.New(bus.Config{Name: "rs485-1", Turnaround: 2083 * time.Microsecond, Port: serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600}}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Silence(); got != 2083*time.Microsecond {
		t.Errorf("9600 8N1 bus with Turnaround 2.083ms: silence %v, want the turnaround, not t3.5", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	port := serialport.Config{Name: "/dev/ttyUSB0", Baud: 9600}
	cases := []struct {
		cfg  bus.Config
		want string
	}{
		{bus.Config{Port: port}, "no name"},
		{bus.Config{Name: "rs485-1", Port: serialport.Config{Name: "/dev/ttyUSB0", Baud: 9601}}, "bus rs485-1: serialport: /dev/ttyUSB0: baud 9601"},
		{bus.Config{Name: "rs485-1", Port: port, Timeout: -time.Second}, "timeout -1s is negative"},
		{bus.Config{Name: "rs485-1", Port: port, BackoffMin: 10 * time.Second, BackoffMax: time.Second}, "backoff_max 1s is below backoff_min 10s"},
		{bus.Config{Name: "rs485-1", Port: port, BitsPerChar: 3}, "bits per char 3"},
		{bus.Config{Name: "rs485-1", Port: port, Turnaround: -time.Millisecond}, "turnaround -1ms is negative"},
	}
	for _, c := range cases {
		_, err := bus.New(c.cfg, bus.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

// Many goroutines on many devices: every caller gets its own reply, and the
// responder never sees a garbled request or a second request arriving
// during a transaction.
func TestConcurrentTransactionsNeverInterleave(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 2 * time.Second}, bus.Options{})
	const units, perCaller, callersPerUnit = 6, 15, 2
	var wg sync.WaitGroup
	errs := make(chan error, units*callersPerUnit*perCaller)
	for u := byte(1); u <= units; u++ {
		h := b.Device("dev-" + string('a'+rune(u)))
		for c := range callersPerUnit {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perCaller {
					seq := byte(c*100 + i)
					got, err := h.Transact(context.Background(), request(u, seq), frameLen(u))
					if err != nil {
						errs <- err
						continue
					}
					if want := reply(u, seq); !bytes.Equal(got, want) {
						errs <- errors.New("unit " + string('0'+rune(u)) + ": wrong reply")
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	const total = units * callersPerUnit * perCaller
	if n := len(l.resp.requests()); n != total {
		t.Errorf("responder saw %d requests, want %d", n, total)
	}
	s := b.Stats()
	if s.Transactions != total || s.BytesSent != total*reqLen {
		t.Errorf("stats: %d transactions, %d bytes sent; want %d and %d", s.Transactions, s.BytesSent, total, total*reqLen)
	}
	if s.Busy <= 0 {
		t.Errorf("stats: busy %v, want > 0", s.Busy)
	}
	if len(s.Devices) != units {
		t.Fatalf("stats: %d devices, want %d", len(s.Devices), units)
	}
	for _, d := range s.Devices {
		if d.Requests != callersPerUnit*perCaller || d.Replies != d.Requests || d.State != bus.DeviceOK || d.LastSuccess.IsZero() {
			t.Errorf("device stats %+v", d)
		}
	}
}

// The responder measures the time from the start of its last reply to the
// arrival of the next request; the bus must leave at least t3.5.
func TestSilenceBeforeEachRequest(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 9600, Parity: serialport.ParityEven}, Timeout: 2 * time.Second}, bus.Options{})
	t35 := b.Silence()
	var wg sync.WaitGroup
	for u := byte(1); u <= 2; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := b.Device("dev")
			for i := range byte(25) {
				if _, err := h.Transact(context.Background(), request(u, i), frameLen(u)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	reqs := l.resp.requests()
	if len(reqs) != 50 {
		t.Fatalf("responder saw %d requests, want 50", len(reqs))
	}
	for i, s := range reqs[1:] {
		if s.sinceLast < t35 {
			t.Errorf("request %d came %v after the last reply began, want ≥ t3.5 = %v", i+1, s.sinceLast, t35)
		}
	}
}

// After a broadcast the line is busy for the request's wire time, then t3.5.
func TestSilenceAfterBroadcastCountsWireTime(t *testing.T) {
	l := newLine(t)
	// At 1200 baud 8N1 a character takes 8.3 ms: the 8-byte broadcast
	// occupies the wire for 66.7 ms, then t3.5 = 29.2 ms follows.
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 1200}, Timeout: 2 * time.Second}, bus.Options{})
	h := b.Device("all")
	for i := range byte(3) {
		got, err := h.Transact(context.Background(), request(0, i), nil)
		if err != nil || got != nil {
			t.Fatalf("broadcast: (%v, %v), want (nil, nil)", got, err)
		}
		if _, err := b.Device("dev-1").Transact(context.Background(), request(1, i), frameLen(1)); err != nil {
			t.Fatal(err)
		}
	}
	want := b.WireTime(reqLen) + b.Silence()
	// The responder stamps a broadcast's arrival after reading it, which
	// may be late by scheduling; allow that much and still tell the wire
	// time apart from t3.5 alone.
	const slack = 25 * time.Millisecond
	for i, s := range l.resp.requests() {
		if s.req[0] != 0 && s.sinceLast < want-slack {
			t.Errorf("request %d came %v after a broadcast, want ≥ wire time + t3.5 = %v", i, s.sinceLast, want)
		}
	}
}

// A complete reply returns at once: reads never have to run into the
// port's 100 ms read timeout to find the end of a frame, even when the
// reply arrives in pieces.
func TestGoodReplyDoesNotWaitForReadTimeout(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 2 * time.Second}, bus.Options{})
	h := b.Device("bay-1")
	const n = 200
	for i := range n {
		got, err := h.Transact(context.Background(), request(1, byte(i)), frameLen(1))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, reply(1, byte(i))) {
			t.Fatalf("reply % x, want % x", got, reply(1, byte(i)))
		}
	}
	// Waiting for the read timeout would cost one empty read per
	// transaction; allow a few for a machine that stalls the responder.
	if s := b.Stats(); s.EmptyReads > n/20 {
		t.Errorf("%d of %d transactions ran into the read timeout", s.EmptyReads, n)
	}

	// In pieces: the unit byte, a pause, then the rest.
	l.resp.mu.Lock()
	l.resp.split = 20 * time.Millisecond
	l.resp.mu.Unlock()
	for i := range 5 {
		seq := byte(200 + i)
		got, err := h.Transact(context.Background(), request(1, seq), frameLen(1))
		if err != nil || !bytes.Equal(got, reply(1, seq)) {
			t.Fatalf("split reply: (% x, %v), want % x", got, err, reply(1, seq))
		}
	}
}

// A reply that cannot be the expected frame is an error (not a timeout) and
// the next transaction starts clean.
func TestFrameLenErrorIsReported(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 2 * time.Second}, bus.Options{})
	h := b.Device("bay-2")
	// Unit 2 answers, but the caller expects unit 3.
	_, err := h.Transact(context.Background(), request(2, 1), frameLen(3))
	if err == nil || errors.Is(err, drivers.ErrTimeout) || !strings.Contains(err.Error(), "expected unit 3") {
		t.Fatalf("mismatched reply: %v, want the frame error", err)
	}
	for _, want := range []string{"bus rs485-1", l.link, "device bay-2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	got, err := h.Transact(context.Background(), request(2, 2), frameLen(2))
	if err != nil || !bytes.Equal(got, reply(2, 2)) {
		t.Fatalf("next transaction: (% x, %v)", got, err)
	}
	if s := h.Stats(); s.Errors != 1 || s.Replies != 1 || s.State != bus.DeviceOK || !strings.Contains(s.LastError, "expected unit 3") {
		t.Errorf("device stats %+v", s)
	}
}

// A dead device backs off (on the fake clock) while another device on the
// same line keeps every transaction answered; the dead one recovers on its
// first success.
func TestDeadDeviceBacksOffWhileOthersContinue(t *testing.T) {
	l := newLine(t)
	l.resp.setSilent(2, true)
	clock := newFakeClock()
	b := startBus(t, bus.Config{
		Port:       serialport.Config{Name: l.link, Baud: 115200},
		Timeout:    50 * time.Millisecond,
		BackoffMin: time.Second,
		BackoffMax: 4 * time.Second,
	}, bus.Options{Clock: clock})
	live, dead := b.Device("live"), b.Device("dead")

	// The live device polls throughout.
	stop := make(chan struct{})
	liveDone := make(chan int)
	go func() {
		n := 0
		defer func() { liveDone <- n }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			seq := byte(i)
			got, err := live.Transact(context.Background(), request(1, seq), frameLen(1))
			if err != nil || !bytes.Equal(got, reply(1, seq)) {
				t.Errorf("live device: (% x, %v)", got, err)
				return
			}
			n++
		}
	}()

	deadSent := func() int {
		n := 0
		for _, s := range l.resp.requests() {
			if s.req[0] == 2 {
				n++
			}
		}
		return n
	}
	try := func() error {
		_, err := dead.Transact(context.Background(), request(2, 0), frameLen(2))
		return err
	}

	// First miss: a real timeout on the line.
	if err := try(); !errors.Is(err, drivers.ErrTimeout) || isBackoff(err) {
		t.Fatalf("first request to the dead device: %v, want a timeout", err)
	}
	if deadSent() != 1 {
		t.Fatalf("dead device got %d requests, want 1", deadSent())
	}
	// Backing off for 1 s: skipped without touching the line.
	for range 5 {
		if err := try(); !isBackoff(err) {
			t.Fatalf("during back-off: %v, want ErrBackoff", err)
		}
	}
	clock.Advance(999 * time.Millisecond)
	if err := try(); !isBackoff(err) {
		t.Fatalf("just before the back-off ends: %v, want ErrBackoff", err)
	}
	if st := dead.Stats(); st.State != bus.DeviceBackoff || st.Skipped != 6 || st.Timeouts != 1 || deadSent() != 1 {
		t.Fatalf("stats during back-off %+v, %d sent", st, deadSent())
	}
	// Each expiry lets one probe through; misses double the back-off:
	// 2 s, then 4 s, then capped at 4 s.
	clock.Advance(time.Millisecond) // 1 s reached: probe
	probes := 1
	for _, backoff := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if err := try(); !errors.Is(err, drivers.ErrTimeout) || isBackoff(err) {
			t.Fatalf("probe: %v, want a timeout on the line", err)
		}
		probes++
		if deadSent() != probes {
			t.Fatalf("dead device got %d requests, want %d", deadSent(), probes)
		}
		clock.Advance(backoff - time.Millisecond)
		if err := try(); !isBackoff(err) {
			t.Fatalf("%v into a %v back-off: %v, want ErrBackoff", backoff-time.Millisecond, backoff, err)
		}
		clock.Advance(time.Millisecond)
	}
	// The device comes back: the probe succeeds and clears the back-off.
	l.resp.setSilent(2, false)
	if got, err := dead.Transact(context.Background(), request(2, 9), frameLen(2)); err != nil || !bytes.Equal(got, reply(2, 9)) {
		t.Fatalf("recovery probe: (% x, %v)", got, err)
	}
	if got, err := dead.Transact(context.Background(), request(2, 10), frameLen(2)); err != nil || !bytes.Equal(got, reply(2, 10)) {
		t.Fatalf("after recovery: (% x, %v)", got, err)
	}
	if st := dead.Stats(); st.State != bus.DeviceOK || st.Timeouts != 4 || st.Replies != 2 || !st.LastSuccess.Equal(clock.Now()) {
		t.Fatalf("stats after recovery %+v", st)
	}
	close(stop)
	if n := <-liveDone; n == 0 {
		t.Fatal("the live device got no transaction through")
	}
	if st := live.Stats(); st.Timeouts != 0 || st.Errors != 0 || st.Skipped != 0 || st.Replies != st.Requests {
		t.Errorf("live device stats %+v", st)
	}
}

// A caller's own ctx deadline bounds the wait (wrapping both ErrTimeout and
// DeadlineExceeded) but starts no back-off.
func TestCtxDeadlineBoundsWait(t *testing.T) {
	l := newLine(t)
	l.resp.setSilent(4, true)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: time.Hour}, bus.Options{Clock: newFakeClock()})
	h := b.Device("slow")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := h.Transact(ctx, request(4, 1), frameLen(4))
	if !errors.Is(err, drivers.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if st := h.Stats(); st.State != bus.DeviceOK || st.Timeouts != 1 {
		t.Errorf("stats %+v, want one timeout and no back-off", st)
	}
	// Not backing off: the next request goes on the line.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := h.Transact(ctx2, request(4, 2), frameLen(4)); isBackoff(err) {
		t.Fatalf("second request: %v, want it sent", err)
	}
	if n := len(l.resp.requests()); n != 2 {
		t.Errorf("responder saw %d requests, want 2", n)
	}
}

// Callers get the line in the order they asked; one whose ctx ends while
// queued leaves the queue and never reaches the wire.
func TestQueueIsFIFOAndCancelLeavesIt(t *testing.T) {
	l := newLine(t)
	gate := make(chan struct{})
	arrivals := make(chan byte, 32)
	l.resp.mu.Lock()
	l.resp.hold[9] = gate
	l.resp.arrivals = arrivals
	l.resp.mu.Unlock()
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: time.Hour}, bus.Options{})

	// Unit 9 holds the line until the gate opens.
	holder := make(chan error, 1)
	go func() {
		_, err := b.Device("holder").Transact(context.Background(), request(9, 1), frameLen(9))
		holder <- err
	}()
	if u := <-arrivals; u != 9 {
		t.Fatalf("first request from unit %d, want 9", u)
	}

	type result struct {
		unit byte
		err  error
	}
	results := make(chan result, 8)
	cancels := map[byte]context.CancelFunc{}
	order := []byte{5, 3, 7, 1, 6, 2}
	for i, u := range order {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[u] = cancel
		go func() {
			_, err := b.Device("dev").Transact(ctx, request(u, 1), frameLen(u))
			results <- result{u, err}
		}()
		waitFor(t, "a caller to queue", func() bool { return b.Stats().Waiting == i+1 })
	}
	// Cancel two queued callers: they return at once, while the holder
	// still has the line.
	for _, u := range []byte{3, 6} {
		cancels[u]()
		r := <-results
		if r.unit != u || !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled caller: unit %d, %v; want unit %d, context.Canceled", r.unit, r.err, u)
		}
	}
	select {
	case err := <-holder:
		t.Fatalf("holder finished (%v) before its reply was released", err)
	default:
	}
	if w := b.Stats().Waiting; w != 4 {
		t.Fatalf("%d callers waiting after two cancelled, want 4", w)
	}
	close(gate)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	var got []byte
	for range 4 {
		r := <-results
		if r.err != nil {
			t.Errorf("unit %d: %v", r.unit, r.err)
		}
		got = append(got, <-arrivals)
	}
	if want := []byte{5, 7, 1, 2}; !bytes.Equal(got, want) {
		t.Errorf("requests reached the line in order %v, want %v", got, want)
	}
	for _, c := range cancels {
		c()
	}
}

// Unplugging the adapter takes the bus down (fail fast with ErrBusDown);
// plugging it back in (a new pty behind the same link) brings it back.
func TestUnplugAndReplug(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 500 * time.Millisecond, ReopenMax: 200 * time.Millisecond}, bus.Options{})
	h := b.Device("bay-7")
	if _, err := h.Transact(context.Background(), request(7, 1), frameLen(7)); err != nil {
		t.Fatal(err)
	}

	l.unplug()
	_, err := h.Transact(context.Background(), request(7, 2), frameLen(7))
	if !errors.Is(err, drivers.ErrBusDown) {
		t.Fatalf("after unplug: %v, want ErrBusDown", err)
	}
	for _, want := range []string{"bus rs485-1", l.link, "device bay-7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	waitFor(t, "the bus to report down", func() bool { return b.Stats().State == bus.StateDown })
	if _, err := h.Transact(context.Background(), request(7, 3), frameLen(7)); !errors.Is(err, drivers.ErrBusDown) {
		t.Fatalf("while down: %v, want ErrBusDown", err)
	}
	if st := h.Stats(); st.State != bus.DeviceDown || st.Errors != 2 {
		t.Errorf("device stats while down %+v", st)
	}

	pair, err := ptypair.Open(l.link)
	if err != nil {
		t.Fatal(err)
	}
	l.pair = pair
	l.resp = newResponder(t, pair)
	waitFor(t, "the bus to reopen", func() bool { return b.Stats().State == bus.StateOpen })
	got, err := h.Transact(context.Background(), request(7, 4), frameLen(7))
	if err != nil || !bytes.Equal(got, reply(7, 4)) {
		t.Fatalf("after replug: (% x, %v)", got, err)
	}
	if s := b.Stats(); s.Reopens != 1 || s.Transactions != 2 {
		t.Errorf("bus stats %+v, want 1 reopen and 2 transactions", s)
	}
}

// A bus whose port is missing at start keeps trying, with its reopen
// back-off on the clock, and opens it once the node appears.
func TestOpensPortThatAppearsLater(t *testing.T) {
	link := t.TempDir() + "/ttyLATE"
	clk := newFakeClock()
	b, err := bus.New(bus.Config{Name: "rs485-2", Port: serialport.Config{Name: link, Baud: 9600}, ReopenMax: 400 * time.Millisecond},
		bus.Options{Logger: slog.New(slog.DiscardHandler), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	_, err = b.Device("d").Transact(context.Background(), request(1, 1), frameLen(1))
	if !errors.Is(err, drivers.ErrBusDown) {
		t.Fatalf("before the node exists: %v, want ErrBusDown", err)
	}
	select {
	case <-b.Ready():
		t.Fatal("Ready was closed before the port opened")
	default:
	}
	// Attempts after 100 ms, then 200 ms, then every 400 ms (ReopenMax).
	for _, wait := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond} {
		clk.BlockUntil(1)
		clk.Advance(wait - time.Nanosecond)
		if clk.Waiters() != 1 {
			t.Fatalf("a reopen attempt before its %v wait ended", wait)
		}
		clk.Advance(time.Nanosecond)
	}
	clk.BlockUntil(1)
	pair, err := ptypair.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	resp := newResponder(t, pair)
	// The node is there, but the bus tries again only after its wait.
	select {
	case <-b.Ready():
		t.Fatal("the port opened before the reopen wait ended")
	default:
	}
	clk.Advance(400 * time.Millisecond)
	waitReady(t, b)
	if _, err := b.Device("d").Transact(context.Background(), request(1, 2), frameLen(1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.State != bus.StateClosed {
		t.Errorf("after Run returned: state %s, want closed", s.State)
	}
	_, err = b.Device("d").Transact(context.Background(), request(1, 3), frameLen(1))
	if !errors.Is(err, bus.ErrClosed) || !errors.Is(err, drivers.ErrBusDown) {
		t.Errorf("after close: %v, want ErrClosed and ErrBusDown", err)
	}
	resp.stop()
	pair.Close()
	resp.check()
}

// A reply that comes after its transaction timed out must not be taken for
// the next transaction's reply: the bus discards stale input first.
func TestLateReplyIsDiscarded(t *testing.T) {
	l := newLine(t)
	gate := make(chan struct{})
	l.resp.mu.Lock()
	l.resp.hold[8] = gate
	l.resp.mu.Unlock()
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 50 * time.Millisecond}, bus.Options{Clock: newFakeClock()})
	_, err := b.Device("meter").Transact(context.Background(), request(8, 1), frameLen(8))
	if !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("held reply: %v, want a timeout", err)
	}
	for _, want := range []string{"bus rs485-1", l.link, "device meter", drivers.ErrTimeout.Error()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("timeout error %q does not name %q", err, want)
		}
	}
	// The late reply arrives and sits in the gateway's input queue.
	close(gate)
	slave, err := os.OpenFile(l.pair.SlavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	late := len(reply(8, 1))
	waitFor(t, "the late reply to arrive", func() bool {
		n, err := unix.IoctlGetInt(int(slave.Fd()), unix.TIOCINQ)
		return err == nil && n >= late
	})
	// Another handle on the same unit (the first one is backing off).
	got, err := b.Device("meter-2").Transact(context.Background(), request(8, 2), frameLen(8))
	if err != nil || !bytes.Equal(got, reply(8, 2)) {
		t.Fatalf("after a late reply: (% x, %v), want % x", got, err, reply(8, 2))
	}
}

// Stale input is looked for before a request only when some may be there:
// on a fresh port, after a driver found its reply bad (Resync), and after
// the line was idle longer than the bus's timeout; not right after a
// complete reply. Bytes that came in before a Resync are discarded.
func TestFlushOnlyWhenInputMayBeStale(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 10 * time.Second}, bus.Options{Clock: newFakeClock()})
	h := b.Device("meter")
	transact := func(seq byte) {
		t.Helper()
		got, err := h.Transact(context.Background(), request(3, seq), frameLen(3))
		if err != nil || !bytes.Equal(got, reply(3, seq)) {
			t.Fatalf("transaction %d: (% x, %v), want % x", seq, got, err, reply(3, seq))
		}
	}
	flushes := func(want uint64, when string) {
		t.Helper()
		if got := b.Stats().Flushes; got != want {
			t.Fatalf("%s: %d flushes, want %d", when, got, want)
		}
	}
	transact(1)
	flushes(1, "first transaction on the port")
	transact(2)
	transact(3)
	flushes(1, "right after complete replies")

	// Garbage sits in the gateway's input queue; the driver says the last
	// reply was bad, so the next transaction discards it.
	if _, err := l.resp.m.Write([]byte{0xEE, 0xEE, 0xEE}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(l.pair.SlavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	waitFor(t, "the garbage to arrive", func() bool {
		n, err := unix.IoctlGetInt(int(slave.Fd()), unix.TIOCINQ)
		return err == nil && n >= 3
	})
	drivers.Resync(h)
	transact(4)
	flushes(2, "after Resync")
	transact(5)
	flushes(2, "after a complete reply again")
}

func TestFlushAfterIdleLine(t *testing.T) {
	l := newLine(t)
	b := startBus(t, bus.Config{Port: serialport.Config{Name: l.link, Baud: 115200}, Timeout: 20 * time.Millisecond}, bus.Options{Clock: newFakeClock()})
	h := b.Device("meter")
	for seq := byte(1); seq <= 2; seq++ {
		if _, err := h.Transact(context.Background(), request(3, seq), frameLen(3)); err != nil {
			t.Fatal(err)
		}
		// Idle for longer than the bus's timeout: the next request
		// looks for stale input again.
		time.Sleep(60 * time.Millisecond)
	}
	if got := b.Stats().Flushes; got != 2 {
		t.Fatalf("%d flushes for 2 transactions after idle time, want 2", got)
	}
}
