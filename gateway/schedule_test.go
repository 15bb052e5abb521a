package gateway

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// poll is one poll a turnDevice saw: which device, at what time.
type poll struct {
	id string
	at time.Time
}

func (p poll) String() string { return fmt.Sprintf("%s@%v", p.id, p.at.Format("15:04:05.000")) }

// turnDevice records each poll on a channel that the devices of a test
// share; hook, when set, runs inside the poll (it may move the clock, as a
// slow line does, or fail).
type turnDevice struct {
	id    string
	clk   clock.Clock
	polls chan<- poll
	hook  func(ctx context.Context) error
}

func (s *turnDevice) Poll(ctx context.Context) ([]payload.Record, error) {
	s.polls <- poll{s.id, s.clk.Now()}
	if s.hook != nil {
		return nil, s.hook(ctx)
	}
	return nil, nil
}

// schedTest is a gateway with just what polling needs, on a fake clock.
type schedTest struct {
	t     *testing.T
	t0    time.Time
	clk   *clock.Fake
	g     *Gateway
	polls chan poll
}

func newSchedTest(t *testing.T) *schedTest {
	t.Helper()
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	eng, err := rules.New(nil, rules.Options{Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{log: quietLogger(), clock: clk, now: clk.Now, rules: eng, queue: make(chan item, 64)}
	return &schedTest{t: t, t0: t0, clk: clk, g: g, polls: make(chan poll, 64)}
}

// add adds a device polled every iv; on a bus, lineBound as a bus
// driver's device is.
func (st *schedTest) add(id, busName string, iv time.Duration, hook func(ctx context.Context) error) *device {
	d := &device{spec: drivers.Spec{ID: id, Bus: busName}, poll: iv, state: "starting", lineBound: busName != "",
		drv: &turnDevice{id: id, clk: st.clk, polls: st.polls, hook: hook}}
	st.g.devices = append(st.g.devices, d)
	return d
}

// start runs the gateway's schedules until the test ends or stop is
// called; stop returns once every schedule has returned.
func (st *schedTest) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	scheds := st.g.schedules()
	for _, s := range scheds {
		go func() { s.run(ctx, st.g); done <- struct{}{} }()
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range scheds {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				st.t.Fatal("a schedule did not return after its ctx ended")
			}
		}
	}
	st.t.Cleanup(stop)
	return stop
}

// expect takes the next polls and checks them: device and offset from t0.
func (st *schedTest) expect(want ...poll) {
	st.t.Helper()
	for _, w := range want {
		select {
		case got := <-st.polls:
			if got.id != w.id || !got.at.Equal(w.at) {
				st.t.Fatalf("poll %s at %v, want %s at %v", got.id, got.at.Sub(st.t0), w.id, w.at.Sub(st.t0))
			}
		case <-time.After(10 * time.Second):
			st.t.Fatalf("no poll of %s at %v", w.id, w.at.Sub(st.t0))
		}
	}
}

// quiet checks that no poll is waiting to be taken.
func (st *schedTest) quiet(why string) {
	st.t.Helper()
	select {
	case p := <-st.polls:
		st.t.Fatalf("%s: polled %s at %v", why, p.id, p.at.Sub(st.t0))
	default:
	}
}

// at is a poll of id at offset d from t0.
func (st *schedTest) at(id string, d time.Duration) poll { return poll{id, st.t0.Add(d)} }

// step waits until the schedules sleep on the clock (n timers), then
// moves it by d.
func (st *schedTest) step(n int, d time.Duration) {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.clk.BlockUntilContext(ctx, n); err != nil {
		st.t.Fatalf("%d of %d schedules came back to wait on the clock", st.clk.Waiters(), n)
	}
	st.clk.Advance(d)
}

type devState struct {
	state                string
	polls, skipped, errs uint64
}

func stateOf(d *device) devState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return devState{d.state, d.polls.Load(), d.skipped.Load(), d.errs.Load()}
}

// The devices of a bus share one schedule and so one goroutine; a device
// that no line bounds (a plugin, even on a bus, or a GPIO device) has one
// of its own. First polls are spread over the interval across all devices.
func TestSchedulesGroupTheDevicesOfABus(t *testing.T) {
	st := newSchedTest(t)
	st.add("a", "rs485-1", time.Second, nil)
	st.add("b", "rs485-2", time.Second, nil)
	st.add("c", "rs485-1", time.Second, nil)
	plugin := st.add("p", "rs485-1", time.Second, nil)
	plugin.lineBound = false
	st.add("door", "", time.Second, nil)
	got := map[string][]string{}
	var phases []time.Duration
	for _, s := range st.g.schedules() {
		for _, e := range s.due {
			got[s.name] = append(got[s.name], e.d.spec.ID)
			phases = append(phases, e.phase)
		}
	}
	want := map[string][]string{"rs485-1": {"a", "c"}, "rs485-2": {"b"}, "p": {"p"}, "door": {"door"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("schedules %v, want %v", got, want)
	}
	if fmt.Sprint(phases) != "[0s 400ms 200ms 600ms 800ms]" {
		t.Errorf("first polls at %v, want the devices' places spread over the interval", phases)
	}
}

// On one bus the device due first is polled first, whatever its interval,
// each at its own fixed rate, and the schedule sleeps between polls on one
// timer.
func TestScheduleTakesTurnsByDueTime(t *testing.T) {
	st := newSchedTest(t)
	const iv = 300 * time.Millisecond
	st.add("a", "rs485-1", iv, nil)
	st.add("b", "rs485-1", iv, nil)
	st.add("slow", "rs485-1", 2*iv, nil) // phase 2/3 of its 600 ms: 400 ms
	st.start()
	ms := time.Millisecond
	st.expect(st.at("a", 0))
	st.step(1, 100*ms-1)
	st.quiet("before b's phase")
	st.step(1, 1)
	st.expect(st.at("b", 100*ms))
	for _, p := range []poll{st.at("a", 300*ms), st.at("slow", 400*ms), st.at("b", 400*ms), st.at("a", 600*ms),
		st.at("b", 700*ms), st.at("a", 900*ms), st.at("slow", 1000*ms), st.at("b", 1000*ms)} {
		st.step(1, p.at.Sub(st.clk.Now()))
		st.expect(p)
		if p.id == "slow" { // due with b: polled back to back, no timer between
			continue
		}
		st.quiet("between turns")
	}
	if st.clk.Waiters() > 1 {
		t.Errorf("%d timers for one bus, want 1", st.clk.Waiters())
	}
}

// The schedule keeps a fixed rate on the gateway's clock, starting at the
// device's phase; a poll that comes late moves the schedule on instead of
// bursting to catch up.
func TestScheduleKeepsItsRateWithoutCatchUp(t *testing.T) {
	st := newSchedTest(t)
	const iv = time.Second
	d := st.add("bay-1", "rs485-1", iv, nil)
	st.add("bay-2", "rs485-2", time.Hour, nil) // so that bay-1's phase is half an interval
	st.g.devices[0], st.g.devices[1] = st.g.devices[1], st.g.devices[0]
	const phase = iv / 2
	st.start()
	st.expect(st.at("bay-2", 0))
	st.step(2, phase-1)
	st.quiet("polled before its phase")
	st.step(2, 1)
	st.expect(st.at("bay-1", phase))
	for i := time.Duration(1); i <= 3; i++ {
		st.step(2, iv)
		st.expect(st.at("bay-1", phase+i*iv))
	}
	// The gateway stalls for three intervals: one late poll, then the next
	// a tenth of an interval later, not three at once.
	late := st.t0.Add(phase + 6*iv + iv/2)
	st.step(2, 3*iv+iv/2)
	st.expect(poll{"bay-1", late})
	st.step(2, iv/10-1)
	st.quiet("polled again at once after a late poll")
	st.step(2, 1)
	st.expect(poll{"bay-1", late.Add(iv / 10)})
	st.step(2, iv)
	st.expect(poll{"bay-1", late.Add(iv/10 + iv)})
	st.clk.BlockUntil(2)
	if n := d.polls.Load(); n != 7 {
		t.Errorf("%d polls counted, want 7", n)
	}
}

// A device whose polls take longer than its interval (a slow line, a
// device that answers late) does not starve the others: everyone overdue
// gets one turn, the one that waited longest first, and then the bus goes
// round-robin, each device once per round, with no bursts to catch up.
func TestScheduleSlowDeviceDoesNotStarveOthers(t *testing.T) {
	st := newSchedTest(t)
	ms := time.Millisecond
	const iv = 100 * time.Millisecond
	st.add("a", "rs485-1", iv, nil)
	st.add("b", "rs485-1", iv, func(context.Context) error { st.clk.Advance(250 * ms); return nil })
	st.add("c", "rs485-1", iv, nil)
	st.add("d", "rs485-1", iv, nil)
	st.start()
	st.expect(st.at("a", 0))
	st.step(1, 25*ms)
	// b's poll ends at 275 ms; c, d and a are overdue and polled at once,
	// each rescheduled to 285 ms (a tenth of an interval on), in the
	// order they were rescheduled before: b, c, d, a.
	st.expect(st.at("b", 25*ms), st.at("c", 275*ms), st.at("d", 275*ms), st.at("a", 275*ms))
	st.quiet("a burst to catch up")
	for round := time.Duration(0); round < 3; round++ {
		at := 285*ms + round*260*ms
		st.step(1, st.t0.Add(at).Sub(st.clk.Now()))
		st.expect(st.at("b", at), st.at("c", at+250*ms), st.at("d", at+250*ms), st.at("a", at+250*ms))
		st.quiet("a burst to catch up")
	}
	st.clk.BlockUntil(1)
	polls := map[string]uint64{}
	for _, d := range st.g.devices {
		polls[d.spec.ID] = d.polls.Load()
	}
	if fmt.Sprint(polls) != "map[a:5 b:4 c:4 d:4]" {
		t.Errorf("polls %v, want a:5 b:4 c:4 d:4", polls)
	}
}

// A device that backs off (its polls fail at once with bus.ErrBackoff)
// keeps its place and its rate: it is asked once per interval, not in a
// loop, the others keep theirs, its skips are counted, and one fault
// event reports it offline and one back online.
func TestScheduleDeviceInBackoff(t *testing.T) {
	st := newSchedTest(t)
	const iv = 100 * time.Millisecond
	ms := time.Millisecond
	var backingOff atomic.Bool
	backingOff.Store(true)
	x := st.add("x", "rs485-1", iv, func(context.Context) error {
		if backingOff.Load() {
			return fmt.Errorf("bus rs485-1: device x: %w until 08:00:01: %w", bus.ErrBackoff, drivers.ErrTimeout)
		}
		return nil
	})
	y := st.add("y", "rs485-1", iv, nil)
	st.start()
	st.expect(st.at("x", 0))
	for i := time.Duration(0); i < 3; i++ {
		st.step(1, 50*ms)
		st.expect(st.at("y", 50*ms+i*iv))
		st.quiet("x polled again before its interval")
		st.step(1, 50*ms)
		st.expect(st.at("x", (i+1)*iv))
		st.quiet("x polled again before its interval")
	}
	st.step(1, 1) // the last poll's outcome is recorded before the schedule sleeps
	if s := stateOf(x); s.state != "backoff" || s.skipped != 4 || s.errs != 0 {
		t.Errorf("x: state %q, %d skipped, %d errors; want backoff, 4, 0", s.state, s.skipped, s.errs)
	}
	if s := stateOf(y); s.state != "ok" || s.polls != 3 {
		t.Errorf("y: state %q, %d polls; want ok, 3", s.state, s.polls)
	}
	backingOff.Store(false)
	st.step(1, 50*ms-1)
	st.expect(st.at("y", 350*ms))
	st.step(1, 50*ms)
	st.expect(st.at("x", 400*ms))
	st.step(1, 1)
	var faults []string
	for len(st.g.queue) > 0 {
		it := <-st.g.queue
		for _, r := range it.recs {
			faults = append(faults, r.Tags["device"]+":"+r.Fields["state"].Interface().(string))
		}
	}
	if fmt.Sprint(faults) != "[x:offline x:online]" {
		t.Errorf("fault events %v, want x offline once, then online", faults)
	}
}

// Stopping ends a schedule that sleeps and one whose device is in the
// middle of a poll; the poll cut short is not a device failure.
func TestScheduleStops(t *testing.T) {
	for _, inPoll := range []bool{false, true} {
		t.Run(fmt.Sprintf("in_poll=%v", inPoll), func(t *testing.T) {
			st := newSchedTest(t)
			polling := make(chan struct{})
			d := st.add("a", "rs485-1", time.Second, func(ctx context.Context) error {
				if !inPoll {
					return nil
				}
				close(polling)
				<-ctx.Done()
				return fmt.Errorf("bus rs485-1: device a: %w", ctx.Err())
			})
			stop := st.start()
			st.expect(st.at("a", 0))
			if inPoll {
				<-polling
			} else {
				st.clk.BlockUntil(1)
			}
			stop()
			if st.clk.Waiters() != 0 {
				t.Errorf("%d timers left on the clock", st.clk.Waiters())
			}
			st.clk.Advance(10 * time.Second)
			st.quiet("polled after stopping")
			if s := stateOf(d); s.errs != 0 || len(st.g.queue) != 0 {
				t.Errorf("%d errors and %d fault events after a poll cut short by stopping, want none", s.errs, len(st.g.queue))
			}
		})
	}
}

// gatedPort is a line whose replies the test lets through: a request is
// answered with one byte, and a request starting with a byte in gated
// only once the test sends on permit. Every request is reported on
// writes.
type gatedPort struct {
	gated   byte
	permit  chan struct{}
	writes  chan byte
	pending chan byte
}

func (p *gatedPort) Write(b []byte) (int, error) {
	p.writes <- b[0]
	p.pending <- b[0]
	return len(b), nil
}
func (p *gatedPort) Flush() error { return nil }
func (p *gatedPort) Close() error { return nil }
func (p *gatedPort) Read(b []byte) (int, error) {
	select {
	case c := <-p.pending:
		if c == p.gated {
			<-p.permit
		}
		b[0] = c
		return 1, nil
	case <-time.After(serialport.ReadTimeout):
		return 0, io.EOF
	}
}

// lineDevice makes one transaction per poll on its bus handle.
type lineDevice struct {
	h   *bus.Handle
	req byte
}

func (d *lineDevice) Poll(ctx context.Context) ([]payload.Record, error) {
	_, err := d.h.Transact(ctx, []byte{d.req}, func([]byte) (int, error) { return 1, nil })
	return nil, err
}

// A bus's schedule polls back to back, yet a command that asks for the
// line while a scheduled transaction is on it goes next: the schedule's
// transactions queue in the bus's FIFO like everyone else's.
func TestCommandGoesBetweenScheduledTransactions(t *testing.T) {
	port := &gatedPort{gated: 'S', permit: make(chan struct{}), writes: make(chan byte, 64), pending: make(chan byte, 1)}
	b, err := bus.New(bus.Config{Name: "rs485-1", Port: serialport.Config{Name: "/dev/fake", Baud: 115200}, Turnaround: time.Microsecond},
		bus.Options{Logger: quietLogger(), Open: func(serialport.Config) (serialport.Port, error) { return port, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)
	<-b.Ready()
	// The real clock and a 1 ns interval: the scheduled device is always
	// due, so the schedule polls it back to back.
	eng, err := rules.New(nil, rules.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{log: quietLogger(), clock: clock.Real(), now: time.Now, rules: eng, queue: make(chan item, 64)}
	g.devices = []*device{{spec: drivers.Spec{ID: "bay-1", Bus: "rs485-1"}, poll: time.Nanosecond, state: "starting",
		lineBound: true, drv: &lineDevice{h: b.Device("bay-1"), req: 'S'}}}
	scheds := g.schedules()
	done := make(chan struct{})
	go func() { defer close(done); scheds[0].run(ctx, g) }()
	defer func() { cancel(); close(port.permit); <-done }()

	next := func() byte { // the next request on the line
		t.Helper()
		select {
		case c := <-port.writes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no request on the line for 10 s")
			return 0
		}
	}
	for round := range 3 {
		if c := next(); c != 'S' {
			t.Fatalf("round %d: request %q on the line, want the schedule's", round, c)
		}
		// The schedule's transaction holds the line: the command queues.
		cmd := make(chan error, 1)
		go func() {
			_, err := b.Device("door").Transact(ctx, []byte{'C'}, func([]byte) (int, error) { return 1, nil })
			cmd <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); b.Stats().Waiting != 1; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the command never queued for the line", round)
			}
		}
		port.permit <- struct{}{}
		if c := next(); c != 'C' {
			t.Fatalf("round %d: request %q after the scheduled one, want the command that queued during it", round, c)
		}
		if err := <-cmd; err != nil {
			t.Fatalf("round %d: command: %v", round, err)
		}
		// The scheduled transaction that queued behind the command.
		if c := next(); c != 'S' {
			t.Fatalf("round %d: request %q, want the schedule's again", round, c)
		}
		port.permit <- struct{}{}
	}
}
