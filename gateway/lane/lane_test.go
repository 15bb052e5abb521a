package lane_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/lane"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// recorder keeps what a lane emits, checked against the contract.
type recorder struct {
	t    testing.TB
	mu   sync.Mutex
	recs []payload.Record
}

func (r *recorder) emit(_ context.Context, recs []payload.Record) error {
	for i := range recs {
		if err := payload.CheckSchema(&recs[i]); err != nil {
			r.t.Errorf("record %+v: %v", recs[i], err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, recs...)
	return nil
}

// events returns the lane events since the last call ("alert:RULE" for
// alerts).
func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Measurement == "barrier" {
			continue
		}
		if rec.Measurement == "alert" {
			out = append(out, "alert:"+rec.Tags["rule"])
			continue
		}
		out = append(out, rec.Tags["event"])
	}
	r.recs = nil
	return out
}

// barrier returns the barrier records not yet taken by events, as
// "event" or "event:count".
func (r *recorder) barrier() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Measurement != "barrier" {
			continue
		}
		if rec.Tags["device"] != rec.Tags["lane"] || rec.Tags["direction"] == "" {
			r.t.Errorf("barrier record tags %v", rec.Tags)
		}
		e := rec.Fields["event"].Str()
		if c, ok := rec.Fields["count"]; ok {
			e += fmt.Sprintf(":%d", c.Int())
		}
		out = append(out, e)
	}
	return strings.Join(out, " ")
}

func (r *recorder) last(event string) payload.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.recs) - 1; i >= 0; i-- {
		if r.recs[i].Tags["event"] == event {
			return r.recs[i]
		}
	}
	r.t.Fatalf("no %s event", event)
	return payload.Record{}
}

// fakeBarrier records the moves commanded.
type fakeBarrier struct {
	mu    sync.Mutex
	moves []bool
	err   error
}

func (b *fakeBarrier) Move(_ context.Context, open bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.moves = append(b.moves, open)
	return b.err
}

func (b *fakeBarrier) got() []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.moves
	b.moves = nil
	return out
}

type rig struct {
	t   *testing.T
	clk *clock.Fake
	rec *recorder
	bar *fakeBarrier
	lot *lane.Lot
	l   *lane.Lane
	ctx context.Context
}

const (
	resident = "1:4242"
	stranger = "1:999"
)

func newRig(t *testing.T, direction string, capacity int, mod func(*lane.Config)) *rig {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC))
	store, err := access.OpenStore(t.TempDir(), access.StoreOptions{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Sync(1, []access.Credential{{ID: "res-1", Card: resident, Doors: []string{"gate-in", "gate-out"}}}); err != nil {
		t.Fatal(err)
	}
	lot, err := lane.OpenLot(t.TempDir(), "p1", capacity, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: clk, rec: &recorder{t: t}, bar: &fakeBarrier{}, lot: lot, ctx: context.Background()}
	cfg := lane.Config{Name: "gate-" + direction, Direction: direction, Lot: lot, Store: store, Barrier: r.bar,
		PositionOpened: true, PositionClosed: true, Visitors: lane.VisitorsAuto,
		OpenTime: 20 * time.Second, MotorTime: 4 * time.Second, Emit: r.rec.emit, Clock: clk}
	if mod != nil {
		mod(&cfg)
	}
	if r.l, err = lane.New(cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) expect(want ...string) {
	r.t.Helper()
	if got := r.rec.events(); !slices.Equal(got, want) {
		r.t.Fatalf("events %v, want %v", got, want)
	}
}

func (r *rig) moves(want ...bool) {
	r.t.Helper()
	if got := r.bar.got(); !slices.Equal(got, want) {
		r.t.Fatalf("barrier moves %v, want %v (true = open)", got, want)
	}
}

func (r *rig) state(want string) {
	r.t.Helper()
	if got := r.l.Status().State; got != want {
		r.t.Fatalf("state %s, want %s", got, want)
	}
}

// opened lets the barrier reach the top after d.
func (r *rig) opened(d time.Duration) {
	r.clk.Advance(d)
	r.l.Position(r.ctx, true, true)
	r.l.Position(r.ctx, false, false)
}

func (r *rig) closed(d time.Duration) {
	r.clk.Advance(d)
	r.l.Position(r.ctx, true, false)
	r.l.Position(r.ctx, false, true)
}

// pass drives one vehicle from the arming loop over the safety loop.
func (r *rig) pass() {
	r.l.Safety(r.ctx, true)
	r.l.Arming(r.ctx, false)
	r.clk.Advance(2 * time.Second)
	r.l.Safety(r.ctx, false)
}

func TestResidentInWhileVisitorRefusedWhenFull(t *testing.T) {
	r := newRig(t, lane.In, 2, nil)
	if _, _, err := r.lot.Set(2, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	// A visitor arrives at a full lot: refused, the barrier stays down.
	r.l.Arming(r.ctx, true)
	if got := r.rec.last("denied"); got.Fields["reason"].Str() != "lot_full" {
		t.Fatalf("denied for %v, want lot_full", got.Fields["reason"])
	}
	r.expect("arrived", "denied")
	r.moves()
	r.l.Arming(r.ctx, false)

	// A stranger's card is refused too.
	r.l.Arming(r.ctx, true)
	r.rec.events()
	if r.l.Present(r.ctx, lane.Read{Reader: "tag-in", Card: stranger}) {
		t.Fatal("unknown card granted")
	}
	r.expect("denied")
	r.moves()

	// The resident gets in although the lot is full.
	if !r.l.Present(r.ctx, lane.Read{Reader: "tag-in", Card: resident}) {
		t.Fatal("resident refused")
	}
	r.expect("granted", "opening")
	r.moves(true)
	r.state(lane.StateOpening)
	r.opened(3 * time.Second)
	if d := r.rec.last("opened").Fields["duration_ms"].Float(); d != 3000 {
		t.Fatalf("opened after %v ms, want 3000", d)
	}
	r.expect("opened")
	r.pass()
	rec := r.rec.last("passed")
	if rec.Fields["credential"].Str() != "res-1" || rec.Fields["occupied"].Int() != 3 || rec.Fields["free"].Int() != 0 {
		t.Fatalf("passed record %v", rec.Fields)
	}
	if rec.Fields["duration_ms"].Float() != 5000 {
		t.Fatalf("grant to passage %v ms, want 5000", rec.Fields["duration_ms"].Float())
	}
	if got := r.rec.barrier(); got != "vehicle_in:3" {
		t.Fatalf("barrier records %q", got)
	}
	r.expect("passed", "closing")
	r.moves(false)
	r.closed(3 * time.Second)
	r.expect("closed")
	r.state(lane.StateClosed)
	if st := r.lot.State(); st.Occupied != 3 || !st.Full {
		t.Fatalf("lot %+v, want 3 in and full", st)
	}
}

func TestVisitorInWhenNotFullAndResidentCardIsOneVehicle(t *testing.T) {
	r := newRig(t, lane.In, 10, nil)
	r.l.Arming(r.ctx, true)
	r.expect("arrived", "granted", "opening")
	r.moves(true)
	// The vehicle let in as a visitor shows a resident tag: still one vehicle.
	r.l.Present(r.ctx, lane.Read{Reader: "tag-in", Card: resident})
	r.expect("granted")
	r.opened(time.Second)
	r.pass()
	if got := r.rec.last("passed").Fields["credential"].Str(); got != "res-1" {
		t.Fatalf("passed as %q, want res-1", got)
	}
	r.expect("opened", "passed", "closing")
	if st := r.l.Status(); st.Pending != 0 {
		t.Fatalf("%d grants left after one vehicle", st.Pending)
	}
}

func TestVisitorsDenyWaitsForCredentialOrCommand(t *testing.T) {
	r := newRig(t, lane.In, 10, func(c *lane.Config) { c.Visitors = lane.VisitorsDeny })
	r.l.Arming(r.ctx, true)
	r.expect("arrived")
	r.moves()
	r.l.Open(r.ctx, "operator")
	r.expect("granted", "opening")
	if got := r.rec.events(); got != nil {
		t.Fatal(got)
	}
	r.moves(true)
}

func TestSafetyLoopKeepsBarrierOpen(t *testing.T) {
	r := newRig(t, lane.Out, 10, nil)
	r.lot.Set(5, r.clk.Now())
	r.l.Arming(r.ctx, true)
	r.opened(time.Second)
	r.moves(true)
	r.l.Safety(r.ctx, true)
	r.l.Arming(r.ctx, false)
	r.rec.events()
	// The vehicle stops under the barrier for long past the open time.
	for range 10 {
		r.clk.Advance(10 * time.Second)
		r.l.Tick(r.ctx)
	}
	r.moves()
	r.expect("close_blocked")
	r.state(lane.StateOpen)
	r.l.Safety(r.ctx, false)
	r.expect("passed", "closing")
	r.moves(false)
	if st := r.lot.State(); st.Occupied != 4 {
		t.Fatalf("occupied %d after one exit from 5", st.Occupied)
	}

	// A vehicle reaching the safety loop while the barrier closes: it goes
	// up again, and down only once the loop is clear.
	r.clk.Advance(time.Second)
	r.l.Safety(r.ctx, true)
	r.expect("reopened", "opening")
	r.moves(true)
	r.opened(time.Second)
	r.l.Tick(r.ctx)
	r.moves()
	r.l.Safety(r.ctx, false)
	r.expect("opened", "tailgate", "alert:lane_tailgate", "closing")
	r.moves(false)
}

func TestTimeoutClosesWhenNoVehicleComes(t *testing.T) {
	r := newRig(t, lane.In, 10, func(c *lane.Config) { c.Visitors = lane.VisitorsDeny })
	r.l.Present(r.ctx, lane.Read{Reader: "tag-in", Card: resident})
	r.opened(2 * time.Second)
	r.rec.events()
	r.clk.Advance(19 * time.Second)
	r.l.Tick(r.ctx)
	r.expect()
	r.clk.Advance(time.Second)
	r.l.Tick(r.ctx)
	r.expect("timeout", "closing")
	r.moves(true, false)
	r.closed(time.Second)
	if st := r.l.Status(); st.Pending != 0 || st.Stats.Timeouts != 1 {
		t.Fatalf("status %+v", st)
	}
	if st := r.lot.State(); st.Occupied != 0 {
		t.Fatalf("occupied %d without a passage", st.Occupied)
	}
}

func TestTailgateCountsBothVehicles(t *testing.T) {
	r := newRig(t, lane.In, 10, func(c *lane.Config) { c.Visitors = lane.VisitorsDeny })
	r.l.Arming(r.ctx, true)
	r.l.Present(r.ctx, lane.Read{Reader: "tag-in", Card: resident})
	r.opened(2 * time.Second)
	// The first car moves onto the safety loop, the second one is right
	// behind it on the arming loop and follows before the barrier is down.
	r.l.Safety(r.ctx, true)
	r.clk.Advance(time.Second)
	r.l.Safety(r.ctx, false)
	r.l.Safety(r.ctx, true)
	r.l.Arming(r.ctx, false)
	r.clk.Advance(time.Second)
	r.l.Safety(r.ctx, false)
	r.opened(time.Second)
	r.expect("arrived", "granted", "opening", "opened", "passed", "closing", "reopened", "opening",
		"tailgate", "alert:lane_tailgate", "opened", "closing")
	if st := r.lot.State(); st.Occupied != 2 {
		t.Fatalf("occupied %d, want 2 (the tailgater counts)", st.Occupied)
	}
	if st := r.l.Status(); st.Stats.Tailgates != 1 || st.Stats.Passed != 1 {
		t.Fatalf("stats %+v", st.Stats)
	}
}

func TestBarrierFault(t *testing.T) {
	r := newRig(t, lane.In, 10, nil)
	r.l.Arming(r.ctx, true)
	r.expect("arrived", "granted", "opening")
	r.clk.Advance(3 * time.Second)
	r.l.Tick(r.ctx)
	r.expect()
	r.clk.Advance(time.Second)
	r.l.Tick(r.ctx)
	r.expect("fault", "alert:lane_fault")
	r.state(lane.StateFault)
	if st := r.l.Status(); st.Stats.Faults != 1 {
		t.Fatalf("stats %+v", st.Stats)
	}
	// It reaches the top late after all: the lane goes on.
	r.opened(time.Second)
	r.pass()
	r.expect("opened", "passed", "closing")

	// A controller that refuses the command is a fault at once.
	r.closed(time.Second)
	r.rec.events()
	r.bar.err = errors.New("relay board offline")
	r.l.Open(r.ctx, "operator")
	r.expect("granted", "opening", "fault", "alert:lane_fault")
}

func TestPositionInputsMissing(t *testing.T) {
	r := newRig(t, lane.Out, 10, func(c *lane.Config) { c.PositionOpened, c.PositionClosed = false, false })
	r.l.Arming(r.ctx, true)
	r.expect("arrived", "granted", "opening", "opened")
	r.pass()
	r.expect("passed", "closing", "closed")
	r.moves(true, false)
}

func TestLotCountSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	lot, err := lane.OpenLot(dir, "p1", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	lot.Watch(func(s lane.LotState) { seen = append(seen, s.Free) })
	lot.Add(1, now)
	lot.Add(1, now)
	lot.Add(-5, now) // never below 0
	lot.Add(1, now)
	if _, _, err := lot.Set(31, now); err == nil {
		t.Fatal("count above 10x capacity accepted")
	}
	if !slices.Equal(seen, []int{3, 2, 1, 3, 2}) {
		t.Fatalf("watcher saw free %v", seen)
	}
	again, err := lane.OpenLot(dir, "p1", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := again.State(); st.Occupied != 1 || st.Free != 2 {
		t.Fatalf("after restart %+v", st)
	}
	os.WriteFile(filepath.Join(dir, "lot-p1.json"), []byte(`{"v":1,"lot":"p1","occupied":-3}`), 0o600)
	if _, err := lane.OpenLot(dir, "p1", 3, nil); err == nil {
		t.Fatal("negative count accepted")
	}
}

// A lot's state file that is not what OpenLot writes is refused with the
// file named, never a panic or a wrong count.
func FuzzOpenLot(f *testing.F) {
	f.Add([]byte(`{"v":1,"lot":"p1","occupied":3,"time":"2026-12-04T08:00:00Z"}`))
	f.Add([]byte(`{"v":2,"lot":"p1","occupied":3}`))
	f.Add([]byte(`{"v":1,"lot":"p2","occupied":3}`))
	f.Add([]byte(`{"v":1,"lot":"p1","occupied":-1}`))
	f.Add([]byte(`{"v":1,"lot":"p1","occupied":1e99}`))
	f.Add([]byte(`nul`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "lot-p1.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		lot, err := lane.OpenLot(dir, "p1", 10, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "lot-p1.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if st := lot.State(); st.Occupied < 0 || st.Free < 0 || st.Free > 10 {
			t.Fatalf("state %+v from %q", st, data)
		}
	})
}
