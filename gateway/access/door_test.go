package access_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/drivers/wiegand/wiegandsim"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/payload"
)

type feedback struct {
	mu     sync.Mutex
	grants int
	denies int
	done   chan struct{}
}

func (f *feedback) Grant(context.Context) error {
	f.mu.Lock()
	f.grants++
	f.mu.Unlock()
	f.done <- struct{}{}
	return nil
}

func (f *feedback) Deny(context.Context) error {
	f.mu.Lock()
	f.denies++
	f.mu.Unlock()
	f.done <- struct{}{}
	return nil
}

// TestWiegandCardOpensDoor runs the whole path with no uplink at all:
// Wiegand pulses on virtual lines → reader → decision → strike output.
func TestWiegandCardOpensDoor(t *testing.T) {
	store := openStore(t, t.TempDir())
	mustSync(t, store, 1, access.Credential{ID: "emp-0042", Card: "123:45678"})
	strikePin := vpin.New("strike", 7, nil)
	strike, err := gpio.NewOutput(strikePin, gpio.OutputConfig{Name: "lobby-strike"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	fb := &feedback{done: make(chan struct{}, 4)}
	const unlock = 150 * time.Millisecond
	door, err := access.NewDoor(access.Config{Name: "lobby", Store: store, Strike: strike, UnlockTime: unlock,
		Feedback: map[string]access.Feedback{"lobby-in": fb}, Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	d0, d1 := vpin.New("D0", 0, nil), vpin.New("D1", 1, nil)
	reader, err := wiegand.New(wiegand.Config{Name: "lobby-in", D0: d0, D1: d1, FrameGap: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reader.Run(ctx, door.WiegandHandler(ctx, "lobby-in")) }()
	defer func() {
		cancel()
		<-done
		door.Close()
	}()
	for d0.Function() != "IN" || d1.Function() != "IN" {
		time.Sleep(time.Millisecond)
	}
	gen := wiegandsim.New(d0, d1)
	sent := time.Now()
	if err := gen.SendCard(ctx, wiegand.H10301, 123, 45678); err != nil {
		t.Fatal(err)
	}
	r := rec.next(t)
	if r.Measurement != "access" || r.Tags["result"] != "granted" || r.Tags["reader"] != "lobby-in" ||
		r.Fields["credential"].String() != "emp-0042" || r.Fields["reason"].String() != "ok" {
		t.Fatalf("access record %+v: want granted to emp-0042", r)
	}
	if r.Fields["latency_ms"].Float() < 0 {
		t.Errorf("negative latency %v", r.Fields["latency_ms"])
	}
	<-fb.done
	deadline := time.Now().Add(10 * time.Second)
	for strike.Active() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h := strikePin.History()
	if len(h) != 3 || h[1].Level != pgpio.High || h[2].Level != pgpio.Low {
		t.Fatalf("strike history %+v: want off, on, off", h)
	}
	if h[1].Time.Before(sent) {
		t.Errorf("strike energized before the card was sent")
	}
	if on := h[2].Time.Sub(h[1].Time); on < unlock {
		t.Errorf("strike on for %v, want the unlock time %v", on, unlock)
	}

	// Unknown card: denied, number not in the event, strike untouched.
	if err := gen.SendCard(ctx, wiegand.H10301, 99, 31337); err != nil {
		t.Fatal(err)
	}
	r = rec.next(t)
	cred := r.Fields["credential"].String()
	if r.Tags["result"] != "denied" || r.Fields["reason"].String() != "unknown_credential" ||
		!strings.HasPrefix(cred, "h:") || strings.Contains(cred, "31337") {
		t.Fatalf("access record %+v: want denied unknown with a masked credential", r)
	}
	<-fb.done
	if n := len(strikePin.History()); n != 3 {
		t.Errorf("strike written %d times after a denial, want 3", n)
	}
	fb.mu.Lock()
	if fb.grants != 1 || fb.denies != 1 {
		t.Errorf("feedback grants %d denies %d, want 1 and 1", fb.grants, fb.denies)
	}
	fb.mu.Unlock()
}

func TestDecisionReasons(t *testing.T) {
	store := openStore(t, t.TempDir())
	day := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	creds, err := access.ParseCredentials(`[
		{"id":"old","card":"1:1","until":"2026-11-01T00:00:00Z"},
		{"id":"new","card":"1:2","from":"2026-12-01T00:00:00Z"},
		{"id":"office","card":"1:3","schedule":[{"days":"mon-fri","from":"07:00","until":"19:00"}]},
		{"id":"night","card":"1:4","schedule":[{"days":"sat","from":"22:00","until":"06:00"}]},
		{"id":"garage","card":"1:5","doors":["garage"]}
	]`)
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, store, 3, creds...)
	tests := []struct {
		card, door, at string
		ok             bool
		why            access.Reason
	}{
		{"1:1", "lobby", "2026-11-25T10:00:00Z", false, access.ReasonExpired},
		{"1:1", "lobby", "2026-10-25T10:00:00Z", true, access.ReasonOK},
		{"1:2", "lobby", "2026-11-25T10:00:00Z", false, access.ReasonNotYetValid},
		{"1:3", "lobby", "2026-11-25T10:00:00Z", true, access.ReasonOK},               // Wednesday
		{"1:3", "lobby", "2026-11-25T19:00:00Z", false, access.ReasonOutsideSchedule}, // end is exclusive
		{"1:3", "lobby", "2026-11-29T10:00:00Z", false, access.ReasonOutsideSchedule}, // Sunday
		{"1:4", "lobby", "2026-11-28T23:00:00Z", true, access.ReasonOK},               // Saturday night
		{"1:4", "lobby", "2026-11-29T05:59:00Z", true, access.ReasonOK},               // Sunday morning
		{"1:4", "lobby", "2026-11-29T22:30:00Z", false, access.ReasonOutsideSchedule}, // Sunday night
		{"1:5", "lobby", "2026-11-25T10:00:00Z", false, access.ReasonDoorNotAllowed},
		{"1:5", "garage", "2026-11-25T10:00:00Z", true, access.ReasonOK},
		{"1:6", "lobby", "2026-11-25T10:00:00Z", false, access.ReasonUnknown},
	}
	for _, tt := range tests {
		clk := &fakeClock{t: day(tt.at)}
		rec := newRecorder()
		door, err := access.NewDoor(access.Config{Name: tt.door, Store: store, Emit: rec.emit, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		dec := door.Present(context.Background(), access.Read{Reader: "r1", Card: tt.card})
		if dec.Granted != tt.ok || dec.Reason != tt.why {
			t.Errorf("%s at %s on %s: got %v/%s, want %v/%s", tt.card, tt.at, tt.door, dec.Granted, dec.Reason, tt.ok, tt.why)
		}
		r := rec.next(t)
		if r.Fields["reason"].String() != string(tt.why) || !r.Time.Equal(clk.Now()) {
			t.Errorf("%s: record %+v", tt.card, r)
		}
	}
}

func TestForcedAndHeldOpen(t *testing.T) {
	store := openStore(t, t.TempDir())
	mustSync(t, store, 1, access.Credential{ID: "emp-1", Card: "5:5"})
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	rec := newRecorder()
	door, err := access.NewDoor(access.Config{Name: "lobby", Store: store, UnlockTime: 5 * time.Second,
		HeldTime: 30 * time.Second, Emit: rec.emit, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	expectDoor := func(state string, open bool) {
		t.Helper()
		r := rec.next(t)
		if r.Measurement != "door" || r.Fields["state"].String() != state || r.Fields["open"].Bool() != open {
			t.Fatalf("record %+v: want door %s open=%v", r, state, open)
		}
	}
	expectAlert := func(rule string) {
		t.Helper()
		r := rec.next(t)
		if r.Measurement != "alert" || r.Tags["rule"] != rule || r.Tags["device"] != "lobby" {
			t.Fatalf("record %+v: want alert %s", r, rule)
		}
	}
	door.Contact(false, clk.Now()) // initial state
	expectDoor("closed", false)

	// Opens with no grant: forced.
	door.Contact(true, clk.Add(time.Second))
	expectDoor("forced", true)
	expectAlert("door_forced")
	door.Contact(false, clk.Add(time.Second))
	expectDoor("closed", false)

	// A grant, opened within the unlock time, closed in time: no alert.
	door.Present(context.Background(), access.Read{Reader: "r", Card: "5:5"})
	if r := rec.next(t); r.Tags["result"] != "granted" {
		t.Fatalf("record %+v: want granted", r)
	}
	door.Contact(true, clk.Add(3*time.Second))
	expectDoor("open", true)
	door.Check(clk.Add(30 * time.Second)) // exactly HeldTime: not yet
	rec.none(t)
	door.Check(clk.Add(time.Second))
	expectDoor("held", true)
	expectAlert("door_held")
	door.Check(clk.Add(time.Minute)) // raised once
	rec.none(t)
	door.Contact(false, clk.Add(time.Second))
	expectDoor("closed", false)

	// The grant was used: opening again right away is forced.
	door.Contact(true, clk.Add(time.Second))
	expectDoor("forced", true)
	expectAlert("door_forced")
	door.Contact(false, clk.Add(time.Second))
	expectDoor("closed", false)

	// Exit request, then the door opens after the unlock time: forced.
	door.Exit(clk.Now())
	if r := rec.next(t); r.Tags["reader"] != "exit" || r.Fields["reason"].String() != "exit_request" {
		t.Fatalf("record %+v: want exit request", r)
	}
	door.Contact(true, clk.Add(6*time.Second))
	expectDoor("forced", true)
	expectAlert("door_forced")
	door.Contact(false, clk.Add(time.Second))
	expectDoor("closed", false)

	// Exit request, opened within it: open.
	door.Exit(clk.Now())
	rec.next(t)
	door.Contact(true, clk.Add(2*time.Second))
	expectDoor("open", true)
}

// TestDoorRunsOnInputs drives the contact and exit button through debounced
// GPIO inputs on virtual pins.
func TestDoorRunsOnInputs(t *testing.T) {
	store := openStore(t, t.TempDir())
	rec := newRecorder()
	strikePin := vpin.New("strike", 1, nil)
	strike, _ := gpio.NewOutput(strikePin, gpio.OutputConfig{})
	door, err := access.NewDoor(access.Config{Name: "back", Store: store, Strike: strike, UnlockTime: time.Minute, Emit: rec.emit})
	if err != nil {
		t.Fatal(err)
	}
	cPin, ePin := vpin.New("contact", 2, nil), vpin.New("exit", 3, nil)
	contact, _ := gpio.NewInput(cPin, gpio.InputConfig{ActiveLow: false, Debounce: 5 * time.Millisecond}) // high = open
	cPin.Drive(pgpio.Low)
	exit, _ := gpio.NewInput(ePin, gpio.InputConfig{ActiveLow: true, Debounce: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- door.Run(ctx, contact, exit) }()
	if r := rec.next(t); r.Fields["state"].String() != "closed" {
		t.Fatalf("record %+v: want initial closed", r)
	}
	for ePin.Function() != "IN" {
		time.Sleep(time.Millisecond)
	}
	ePin.Drive(pgpio.Low) // press
	if r := rec.next(t); r.Tags["reader"] != "exit" {
		t.Fatalf("record %+v: want exit request", r)
	}
	// The record comes first, the strike right after it (record first).
	for deadline := time.Now().Add(10 * time.Second); !strike.Active(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("exit request did not unlock the strike")
		}
	}
	cPin.Drive(pgpio.High) // door opens
	if r := rec.next(t); r.Fields["state"].String() != "open" {
		t.Fatalf("record %+v: want open", r)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run: %v", err)
	}
}

// TestConcurrentReaders presents cards from two readers at once while a
// sync replaces the set: every read gets exactly one decision and record.
func TestConcurrentReaders(t *testing.T) {
	store := openStore(t, t.TempDir())
	mustSync(t, store, 1, access.Credential{ID: "a", Card: "1:1"}, access.Credential{ID: "b", Card: "1:2"})
	var mu sync.Mutex
	counts := map[string]int{}
	strike, _ := gpio.NewOutput(vpin.New("s", 1, nil), gpio.OutputConfig{})
	door, err := access.NewDoor(access.Config{Name: "gate", Store: store, Strike: strike, Emit: func(r payload.Record) {
		mu.Lock()
		counts[r.Tags["reader"]+"/"+r.Tags["result"]]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, reader := range []string{"in", "out"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if d := door.Present(context.Background(), access.Read{Reader: reader, Card: "1:1"}); !d.Granted {
					t.Errorf("%s: 1:1 denied: %s", reader, d.Reason)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := int64(2); v < 20; v++ {
			if _, err := store.Sync(v, []access.Credential{{ID: "a", Card: "1:1"}}); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if counts["in/granted"] != 200 || counts["out/granted"] != 200 || len(counts) != 2 {
		t.Errorf("records %v: want 200 grants per reader", counts)
	}
	if _, ok, _ := store.Check("1:2", "gate", time.Now()); ok {
		t.Error("card removed by the last sync still granted")
	}
}
