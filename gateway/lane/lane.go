// Package lane runs a parking lot's entry and exit lanes on the gateway,
// offline: a barrier gate, the induction loops before it and under it, the
// readers whose credentials open it, and the count of vehicles in the lot
// that the lanes keep. docs/parking.md describes the wiring and the events.
//
// Concepts:
//
//   - Lane: one barrier with its arming loop (before the barrier: a
//     vehicle waits there) and safety loop (under the barrier: a vehicle
//     is passing). Direction in counts a passing vehicle into its Lot,
//     direction out counts it out.
//   - Decision: a credential read goes through the same credential store
//     and decision as a door (access.Store.Check with the lane's name in
//     the place of the door's), so a resident's tag opens the lanes its
//     credential allows. A vehicle without a credential is a visitor: the
//     lane's visitor policy lets it in when it arrives on the arming loop
//     (VisitorsAuto), unless the lane leads into a full lot, or never
//     (VisitorsDeny). An operator command or a rule opens the lane too.
//   - Barrier states: closed, opening, open, closing and fault. A move is
//     confirmed by the barrier's position inputs when it has them; one that
//     is not confirmed within MotorTime is a fault. The barrier never
//     closes while the safety loop is occupied, and reopens when a vehicle
//     reaches the safety loop while it closes.
//   - Passage: a vehicle that reached the safety loop while the barrier was
//     up and left it. Each grant lets one vehicle pass; a passage without a
//     grant of its own is a tailgate. After the last granted vehicle
//     passed the barrier closes; when none comes within OpenTime it closes
//     anyway (timeout).
//   - Events: every step is a `lane` event record (tags lane, lot,
//     direction, event), emitted through Config.Emit, which returns once
//     the record is durable: the gateway records a decision before it acts
//     on it. Tailgates and faults also raise an `alert`.
//   - Clock: every time the lane reads or waits for comes from
//     Config.Clock, so tests run it on clock.Fake and call Tick.
package lane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Measurement is the measurement of lane event records.
const Measurement = "lane"

// Directions.
const (
	In  = "in"
	Out = "out"
)

// Visitor policies: what a vehicle on the arming loop without a credential
// gets.
const (
	VisitorsDeny = "deny" // nothing: a credential, a command or a rule opens
	VisitorsAuto = "auto" // the barrier opens, unless the lane leads into a full lot
)

// Barrier states.
const (
	StateClosed  = "closed"
	StateOpening = "opening"
	StateOpen    = "open"
	StateClosing = "closing"
	StateFault   = "fault"
)

// Events (the `event` tag of lane records).
const (
	EventGranted      = "granted"       // a credential, visitor, command or rule opens the lane
	EventDenied       = "denied"        // a credential or visitor was refused
	EventOpening      = "opening"       // the barrier was told to open
	EventOpened       = "opened"        // the barrier is up
	EventClosing      = "closing"       // the barrier was told to close
	EventClosed       = "closed"        // the barrier is down
	EventArrived      = "arrived"       // a vehicle reached the arming loop
	EventPassed       = "passed"        // a vehicle with a grant left the safety loop
	EventTailgate     = "tailgate"      // a vehicle without a grant of its own passed
	EventCloseBlocked = "close_blocked" // the barrier should close but a vehicle is on the safety loop
	EventReopened     = "reopened"      // a vehicle reached the safety loop while the barrier closed
	EventTimeout      = "timeout"       // no vehicle came while the barrier was up
	EventFault        = "fault"         // the barrier did not reach its position
	EventCountSet     = "count_set"     // the lot's count was corrected
)

// Reasons a lane gives besides the credential store's.
const (
	ReasonVisitor access.Reason = "visitor"
	ReasonLotFull access.Reason = "lot_full"
	ReasonCommand access.Reason = "command"
	ReasonNoStore access.Reason = "no_credentials" // the lane has no credential store
)

// Defaults.
const (
	DefaultOpenTime  = 30 * time.Second
	DefaultMotorTime = 6 * time.Second
)

// Barrier moves the barrier arm: open raises it, !open lowers it. A move
// returns once it was commanded, not once the arm got there.
type Barrier interface {
	Move(ctx context.Context, open bool) error
}

// Config configures a Lane.
type Config struct {
	Name      string // the lane tag ("north-in")
	Direction string // In or Out
	// Lot is the lot the lane counts into (In) or out of (Out); nil counts
	// nothing and never refuses visitors for a full lot.
	Lot *Lot
	// Store decides credentials; nil refuses every credential (a lane
	// without readers).
	Store *access.Store
	// Feedback per reader name; readers without one get none.
	Feedback map[string]access.Feedback
	Barrier  Barrier
	// PositionOpened and PositionClosed say which position inputs the
	// barrier has; a move toward a position without an input is taken as
	// done once it was commanded.
	PositionOpened, PositionClosed bool
	Visitors                       string        // VisitorsDeny (default) or VisitorsAuto
	OpenTime                       time.Duration // how long an open barrier waits for a vehicle (default 30 s)
	MotorTime                      time.Duration // how long a move may take (default 6 s)
	// Emit records lane and alert records and returns once they are
	// durable. It must be safe for concurrent use. Nil drops them.
	Emit   func(ctx context.Context, recs []payload.Record) error
	Clock  clock.Clock
	Logger *slog.Logger
}

// Lane is one lane's logic. Its methods are safe for concurrent use; each
// runs one step of the state machine to its end (records emitted, barrier
// commanded) before the next starts.
type Lane struct {
	cfg Config
	log *slog.Logger
	clk clock.Clock
	wg  sync.WaitGroup

	mu        sync.Mutex
	state     string
	since     time.Time // when the state began
	deadline  time.Time // when the state times out; zero: never
	arming    bool
	safety    bool
	onBarrier bool // the vehicle on the safety loop came while the barrier was up
	blocked   bool // a close waits for the safety loop to clear
	pending   []grant
	vehicle   time.Time // when the vehicle now on the arming loop arrived
	stats     Stats
}

// grant is one vehicle allowed through.
type grant struct {
	credential string
	reason     access.Reason
	at         time.Time
}

// Stats counts a lane's passages and problems.
type Stats struct {
	Granted, Denied, Passed, Tailgates, Timeouts, Faults uint64
}

// New checks cfg; it does no I/O. The barrier is taken to be closed.
func New(cfg Config) (*Lane, error) {
	if cfg.Name == "" {
		return nil, errors.New("lane: lane without a name")
	}
	if cfg.Direction != In && cfg.Direction != Out {
		return nil, fmt.Errorf("lane %s: direction %q: want in or out", cfg.Name, cfg.Direction)
	}
	if cfg.Barrier == nil {
		return nil, fmt.Errorf("lane %s: no barrier", cfg.Name)
	}
	switch cfg.Visitors {
	case "":
		cfg.Visitors = VisitorsDeny
	case VisitorsDeny, VisitorsAuto:
	default:
		return nil, fmt.Errorf("lane %s: visitors %q: want deny or auto", cfg.Name, cfg.Visitors)
	}
	if cfg.OpenTime == 0 {
		cfg.OpenTime = DefaultOpenTime
	}
	if cfg.MotorTime == 0 {
		cfg.MotorTime = DefaultMotorTime
	}
	if cfg.OpenTime < 0 || cfg.MotorTime < 0 {
		return nil, fmt.Errorf("lane %s: open time %v, motor time %v: want positive", cfg.Name, cfg.OpenTime, cfg.MotorTime)
	}
	if cfg.Emit == nil {
		cfg.Emit = func(context.Context, []payload.Record) error { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lane{cfg: cfg, log: cfg.Logger.With("lane", cfg.Name), clk: clock.OrReal(cfg.Clock), state: StateClosed}
	l.since = l.clk.Now()
	return l, nil
}

// Name is the lane's name.
func (l *Lane) Name() string { return l.cfg.Name }

// Status is a lane's state for tests and the status page.
type Status struct {
	State          string
	Arming, Safety bool
	Pending        int // vehicles allowed through and not yet passed
	Stats          Stats
}

// Status returns the lane's state.
func (l *Lane) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{State: l.state, Arming: l.arming, Safety: l.safety, Pending: len(l.pending), Stats: l.stats}
}

// step collects the records of one step; flush emits them before the
// step acts.
type step struct {
	l    *Lane
	now  time.Time
	recs []payload.Record
}

func (l *Lane) begin() *step { return &step{l: l, now: l.clk.Now()} }

// event adds a lane record with the given fields (string, int64, float64
// or bool values).
func (s *step) event(ev string, fields map[string]payload.Value) {
	tags := map[string]string{"lane": s.l.cfg.Name, "direction": s.l.cfg.Direction, "event": ev}
	if s.l.cfg.Lot != nil {
		tags["lot"] = s.l.cfg.Lot.Name()
	}
	if fields == nil {
		fields = map[string]payload.Value{}
	}
	fields["state"] = payload.String(s.l.state)
	s.recs = append(s.recs, payload.Record{Measurement: Measurement, Tags: tags, Fields: fields, Time: s.now})
	if be := barrierEvents[ev]; be != "" {
		// The contract's barrier measurement, for dashboards that count
		// vehicles and movements by barrier.
		if be == "vehicle" {
			be = "vehicle_" + s.l.cfg.Direction
		}
		f := map[string]payload.Value{"event": payload.String(be)}
		if occ, ok := fields["occupied"]; ok {
			f["count"] = occ
		}
		s.recs = append(s.recs, payload.Record{Measurement: "barrier", Time: s.now, Fields: f,
			Tags: map[string]string{"device": s.l.cfg.Name, "lane": s.l.cfg.Name, "direction": s.l.cfg.Direction}})
	}
}

// barrierEvents maps lane events onto the barrier measurement's events
// (vehicle: vehicle_in or vehicle_out by the lane's direction).
var barrierEvents = map[string]string{EventOpened: "opened", EventClosed: "closed", EventPassed: "vehicle", EventTailgate: "vehicle"}

func (s *step) alert(rule, severity, msg string) {
	s.l.log.Warn(msg, "rule", rule)
	s.recs = append(s.recs, payload.Record{
		Measurement: "alert",
		Tags:        map[string]string{"rule": rule, "severity": severity, "device": s.l.cfg.Name},
		Fields:      map[string]payload.Value{"message": payload.String(msg)},
		Time:        s.now,
	})
}

// flush makes the step's records durable.
func (s *step) flush(ctx context.Context) {
	if len(s.recs) == 0 {
		return
	}
	if err := s.l.cfg.Emit(ctx, s.recs); err != nil {
		s.l.log.Error("lane events not recorded", "records", len(s.recs), "err", err)
	}
	s.recs = nil
}

func ms(d time.Duration) payload.Value { return payload.Float(float64(d) / float64(time.Millisecond)) }

// Read is a credential presented at one of the lane's readers.
type Read = access.Read

// Present decides on a credential read and, on a grant, opens the barrier.
// A credential opens a lane into a full lot: residents still get in.
func (l *Lane) Present(ctx context.Context, r Read) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.begin()
	var id string
	ok, why := false, ReasonNoStore
	if l.cfg.Store != nil {
		id, ok, why = l.cfg.Store.Check(r.Card, l.cfg.Name, s.now)
		if id == "" {
			id = l.cfg.Store.Mask(r.Card)
		}
	}
	fields := map[string]payload.Value{"credential": payload.String(id), "reason": payload.String(string(why)),
		"reader": payload.String(r.Reader)}
	if !r.Time.IsZero() {
		fields["latency_ms"] = ms(time.Since(r.Time)) // the read's time is real time
	}
	l.feedback(ctx, r.Reader, ok)
	if !ok {
		l.stats.Denied++
		s.event(EventDenied, fields)
		s.flush(ctx)
		return false
	}
	l.grantLocked(ctx, s, grant{credential: id, reason: why, at: s.now}, fields)
	return true
}

// Open opens the lane for one vehicle on an operator's command or a rule.
func (l *Lane) Open(ctx context.Context, by string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.begin()
	l.grantLocked(ctx, s, grant{credential: by, reason: ReasonCommand, at: s.now},
		map[string]payload.Value{"credential": payload.String(by), "reason": payload.String(string(ReasonCommand))})
}

func (l *Lane) feedback(ctx context.Context, reader string, ok bool) {
	fb := l.cfg.Feedback[reader]
	if fb == nil {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		show := fb.Deny
		if ok {
			show = fb.Grant
		}
		if err := show(ctx); err != nil {
			l.log.Warn("reader feedback failed", "reader", reader, "err", err)
		}
	}()
}

// grantLocked records a grant and opens the barrier for it.
func (l *Lane) grantLocked(ctx context.Context, s *step, g grant, fields map[string]payload.Value) {
	l.stats.Granted++
	if n := len(l.pending); n > 0 && l.pending[n-1].reason == ReasonVisitor && g.reason != ReasonVisitor {
		// The visitor let in on arrival showed a credential: one vehicle.
		l.pending[n-1] = g
	} else {
		l.pending = append(l.pending, g)
	}
	s.event(EventGranted, fields)
	switch l.state {
	case StateOpen:
		l.deadline = s.now.Add(l.cfg.OpenTime) // wait for this vehicle too
		s.flush(ctx)
	case StateOpening:
		s.flush(ctx)
	default:
		l.moveLocked(ctx, s, true)
	}
}

// moveLocked records and commands a move of the barrier. A move toward a
// position without an input is done at once.
func (l *Lane) moveLocked(ctx context.Context, s *step, open bool) {
	ev, state, confirmed := EventClosing, StateClosing, l.cfg.PositionClosed
	if open {
		ev, state, confirmed = EventOpening, StateOpening, l.cfg.PositionOpened
	}
	l.setState(state, s.now)
	l.deadline = s.now.Add(l.cfg.MotorTime)
	s.event(ev, nil)
	s.flush(ctx) // recorded before it is acted on
	if err := l.cfg.Barrier.Move(ctx, open); err != nil {
		l.faultLocked(ctx, s, "barrier command failed: "+err.Error())
		return
	}
	if !confirmed {
		l.reachedLocked(ctx, s, open)
	}
}

func (l *Lane) setState(state string, now time.Time) {
	l.state, l.since, l.deadline = state, now, time.Time{}
}

// reachedLocked handles the barrier reaching a position.
func (l *Lane) reachedLocked(ctx context.Context, s *step, open bool) {
	took := s.now.Sub(l.since)
	moving := l.state == StateOpening || l.state == StateClosing
	if open {
		l.setState(StateOpen, s.now)
		l.deadline = s.now.Add(l.cfg.OpenTime)
		f := map[string]payload.Value{}
		if moving {
			f["duration_ms"] = ms(took)
		}
		s.event(EventOpened, f)
		if len(l.pending) == 0 && !l.safety {
			// Opened by hand or after a fault with no one to let
			// through: close again.
			l.closeLocked(ctx, s)
			return
		}
		s.flush(ctx)
		return
	}
	l.setState(StateClosed, s.now)
	f := map[string]payload.Value{}
	if moving {
		f["duration_ms"] = ms(took)
	}
	s.event(EventClosed, f)
	s.flush(ctx)
	if len(l.pending) > 0 {
		l.moveLocked(ctx, s, true) // a grant came while it closed
	}
}

// closeLocked lowers the barrier unless a vehicle is on the safety loop.
func (l *Lane) closeLocked(ctx context.Context, s *step) {
	if l.safety {
		if !l.blocked {
			l.blocked = true
			s.event(EventCloseBlocked, nil)
		}
		l.deadline = time.Time{}
		s.flush(ctx)
		return
	}
	l.blocked = false
	l.moveLocked(ctx, s, false)
}

func (l *Lane) faultLocked(ctx context.Context, s *step, msg string) {
	l.stats.Faults++
	was := l.state
	l.setState(StateFault, s.now)
	s.event(EventFault, map[string]payload.Value{"reason": payload.String(msg), "duration_ms": ms(s.now.Sub(l.since))})
	s.alert("lane_fault", "critical", fmt.Sprintf("lane %s: barrier fault while %s: %s", l.cfg.Name, was, msg))
	s.flush(ctx)
}

// Arming reports the arming loop (true: a vehicle is on it).
func (l *Lane) Arming(ctx context.Context, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on == l.arming {
		return
	}
	l.arming = on
	if !on {
		return
	}
	s := l.begin()
	l.vehicle = s.now
	s.event(EventArrived, nil)
	if l.cfg.Visitors != VisitorsAuto || len(l.pending) > 0 || l.safety {
		s.flush(ctx)
		return
	}
	if l.cfg.Direction == In && l.cfg.Lot != nil && l.cfg.Lot.Full() {
		l.stats.Denied++
		s.event(EventDenied, map[string]payload.Value{"reason": payload.String(string(ReasonLotFull)),
			"credential": payload.String("visitor")})
		s.flush(ctx)
		return
	}
	l.grantLocked(ctx, s, grant{credential: "visitor", reason: ReasonVisitor, at: s.now},
		map[string]payload.Value{"credential": payload.String("visitor"), "reason": payload.String(string(ReasonVisitor))})
}

// Safety reports the safety loop (true: a vehicle is under the barrier).
func (l *Lane) Safety(ctx context.Context, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on == l.safety {
		return
	}
	l.safety = on
	s := l.begin()
	if on {
		l.onBarrier = l.state != StateClosed
		if l.state == StateClosing {
			s.event(EventReopened, nil)
			l.moveLocked(ctx, s, true)
		}
		return
	}
	if !l.onBarrier {
		return // something on the loop under a closed barrier passed nothing
	}
	l.onBarrier = false
	l.passedLocked(ctx, s)
}

// passedLocked counts a vehicle that left the safety loop and closes the
// barrier after the last one allowed through.
func (l *Lane) passedLocked(ctx context.Context, s *step) {
	f := map[string]payload.Value{}
	ev := EventTailgate
	if len(l.pending) > 0 {
		g := l.pending[0]
		l.pending = l.pending[1:]
		ev = EventPassed
		l.stats.Passed++
		f["credential"] = payload.String(g.credential)
		f["reason"] = payload.String(string(g.reason))
		f["duration_ms"] = ms(s.now.Sub(g.at)) // from the grant to the passage
	} else {
		l.stats.Tailgates++
	}
	if l.cfg.Lot != nil {
		d := 1
		if l.cfg.Direction == Out {
			d = -1
		}
		st := l.cfg.Lot.Add(d, s.now)
		f["occupied"] = payload.Int(int64(st.Occupied))
		f["free"] = payload.Int(int64(st.Free))
		f["capacity"] = payload.Int(int64(st.Capacity))
	}
	s.event(ev, f)
	if ev == EventTailgate {
		s.alert("lane_tailgate", "warning", fmt.Sprintf("lane %s: a second vehicle passed on one grant", l.cfg.Name))
	}
	switch {
	case len(l.pending) > 0:
		if l.state == StateOpen {
			l.deadline = s.now.Add(l.cfg.OpenTime)
		}
		s.flush(ctx)
	case l.state == StateOpen || l.state == StateFault:
		l.closeLocked(ctx, s)
	default:
		s.flush(ctx)
	}
}

// Position reports a position input: which is StateOpen or StateClosed,
// active whether the barrier is at that position.
func (l *Lane) Position(ctx context.Context, open, active bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.begin()
	switch {
	case active && open && l.state != StateOpen:
		l.reachedLocked(ctx, s, true)
	case active && !open && l.state != StateClosed:
		l.reachedLocked(ctx, s, false)
	case !active && open && !l.cfg.PositionClosed && l.state == StateClosing:
		l.reachedLocked(ctx, s, false) // only an opened input: leaving it is closed
	case !active && !open && !l.cfg.PositionOpened && l.state == StateOpening:
		l.reachedLocked(ctx, s, true) // only a closed input: leaving it is open
	}
}

// Tick runs the lane's timeouts at now; Run calls it every 100 ms, tests
// call it after moving a fake clock.
func (l *Lane) Tick(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.begin()
	if l.deadline.IsZero() || s.now.Before(l.deadline) {
		return
	}
	switch l.state {
	case StateOpening, StateClosing:
		what := "did not close"
		if l.state == StateOpening {
			what = "did not open"
		}
		l.faultLocked(ctx, s, fmt.Sprintf("%s within %v", what, l.cfg.MotorTime))
		l.deadline = time.Time{}
	case StateOpen:
		if l.safety {
			// The vehicle stopped under the barrier: it stays up.
			l.closeLocked(ctx, s)
			return
		}
		l.stats.Timeouts++
		f := map[string]payload.Value{"duration_ms": ms(s.now.Sub(l.since))}
		if n := len(l.pending); n > 0 {
			f["credential"] = payload.String(l.pending[0].credential)
		}
		l.pending = nil
		s.event(EventTimeout, f)
		l.closeLocked(ctx, s)
	}
}

// Close waits for pending reader feedback.
func (l *Lane) Close() error {
	l.wg.Wait()
	return nil
}
