package osdp_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
)

// A reader that refuses the link (it demands the secure channel the
// gateway is not configured for) is not put through ID, CAP, LSTAT at
// every poll: the CP backs off 1 s, 2 s, 4 s ... up to 60 s, sends nothing
// in between, and says why.
func TestRefusingReaderBacksOff(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	key := [16]byte{1, 2, 3}
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 30, Secure: true, SCBK: &key, RequireSecure: true})
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	p := r.pd(t, "door-30", osdp.Config{Addr: 30, Now: clk.Now})
	err := p.Poll(ctx)
	const cause = "NAK 0x06: secure channel required (the gateway is configured without a key)"
	if !errors.Is(err, osdp.ErrRefused) || !strings.Contains(err.Error(), cause) {
		t.Fatalf("poll: %v, want ErrRefused saying %q", err, cause)
	}
	st := p.Status()
	if st.State != osdp.StateRefused || st.Cause != cause {
		t.Fatalf("status %v %q, want refused with the cause", st.State, st.Cause)
	}
	want := time.Second
	for i := range 9 {
		sent := rd.Counts().Commands
		if err := p.Poll(ctx); !errors.Is(err, osdp.ErrRefused) {
			t.Fatalf("attempt %d during back-off: %v", i, err)
		}
		if rd.Counts().Commands != sent {
			t.Fatalf("attempt %d: commands sent during the back-off", i)
		}
		if got := p.Status().RetryAt.Sub(clk.Now()); got != want {
			t.Fatalf("attempt %d: back-off %s, want %s", i, got, want)
		}
		clk.Add(want)
		if err := p.Poll(ctx); !errors.Is(err, osdp.ErrRefused) {
			t.Fatalf("attempt %d after the back-off: %v", i, err)
		}
		if rd.Counts().Commands == sent {
			t.Fatalf("attempt %d: nothing sent after the back-off", i)
		}
		want = min(2*want, 60*time.Second)
	}
	if evs := p.TakeEvents(); len(evs) != 0 {
		t.Errorf("events %+v from a reader that never came online", evs)
	}
}

// The status page shows the refusal through the driver's Report.
func TestReportShowsRefusal(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	key := [16]byte{1, 2, 3}
	r.reader(t, osdpsim.ReaderConfig{Addr: 31, Secure: true, SCBK: &key, RequireSecure: true})
	info, _ := drivers.Lookup("osdp")
	dev, err := info.New(drivers.Spec{ID: "door-31", Driver: "osdp", Bus: "rs485-osdp", Unit: 31},
		drivers.Env{Bus: r.bus.Device("door-31"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*osdp.Device)
	d.Poll(ctx)
	rep := d.Report()
	if rep["state"] != "refused" || rep["cause"] != "NAK 0x06: secure channel required (the gateway is configured without a key)" || rep["next_try"] == nil {
		t.Errorf("report %v, want state refused, the cause and the next try", rep)
	}
}

// A reader whose PDCAP says it has no secure channel (function 9,
// compliance 0) gets no CHLNG from a CP configured for one: a clear
// refusal instead.
func TestNoChallengeToReaderWithoutSecureChannel(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 32})
	key := [16]byte{1, 2, 3}
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	p := r.pd(t, "door-32", osdp.Config{Addr: 32, Secure: true, SCBK: &key, Now: clk.Now})
	err := p.Poll(ctx)
	if !errors.Is(err, osdp.ErrRefused) || !strings.Contains(err.Error(), "no secure channel (PDCAP function 9, compliance 0)") {
		t.Fatalf("poll: %v, want a refusal naming PDCAP function 9", err)
	}
	if n := rd.Counts().ByCode[osdp.CmdChlng]; n != 0 {
		t.Errorf("%d CHLNG sent to a reader without a secure channel", n)
	}
}

// A wrong key is a refusal too, named as such.
func TestWrongKeyIsRefusal(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	key, wrong := [16]byte{1, 2, 3}, [16]byte{9, 9, 9}
	r.reader(t, osdpsim.ReaderConfig{Addr: 33, Secure: true, SCBK: &key})
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	p := r.pd(t, "door-33", osdp.Config{Addr: 33, Secure: true, SCBK: &wrong, Now: clk.Now})
	if err := p.Poll(ctx); !errors.Is(err, osdp.ErrRefused) || !strings.Contains(p.Status().Cause, "wrong scbk") {
		t.Fatalf("poll: %v (cause %q), want a refusal naming the key", err, p.Status().Cause)
	}
}

// With the gateway polling every 10 s, longer than the 8 s after which the
// reader drops its secure channel, every poll still succeeds (the CP
// starts the link over when it has been idle that long) and the online
// and offline events stay paired: never two online in a row.
func TestSlowPollsKeepSecureLink(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	key := [16]byte{0xC0, 0xFF, 0xEE}
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 34, Secure: true, SCBK: &key, SessionTimeout: 8 * time.Second, Now: clk.Now})
	p := r.pd(t, "door-34", osdp.Config{Addr: 34, Secure: true, SCBK: &key, Now: clk.Now})
	evs := online(t, p)
	for i := range 6 {
		clk.Add(10 * time.Second)
		if err := p.Poll(ctx); err != nil {
			t.Fatalf("poll %d after 10 s: %v", i, err)
		}
		if !p.Status().Secure {
			t.Fatalf("poll %d: secure channel down", i)
		}
		evs = append(evs, p.TakeEvents()...)
	}
	if rd.Counts().SCExpired == 0 {
		t.Fatal("the reader never dropped its secure channel: the test proves nothing")
	}
	checkPaired(t, evs)
	if k := kinds(evs); len(k) != 1 || k[0] != osdp.EventOnline {
		t.Errorf("events %v, want one online", k)
	}
}

// checkPaired fails when two online (or two offline) events follow each
// other.
func checkPaired(t *testing.T, evs []osdp.Event) {
	t.Helper()
	last := ""
	for _, e := range evs {
		if e.Kind != osdp.EventOnline && e.Kind != osdp.EventOffline {
			continue
		}
		if e.Kind == last {
			t.Fatalf("two %s events in a row: %v", last, kinds(evs))
		}
		last = e.Kind
	}
}

// A reader that comes and goes (silent, refused, back) gives paired
// events, and the driver's record says online=false as soon as the reader
// is offline.
func TestOnlineFieldFollowsTheLink(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 35})
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	info, _ := drivers.Lookup("osdp")
	dev, err := info.New(drivers.Spec{ID: "door-35", Driver: "osdp", Bus: "rs485-osdp", Unit: 35},
		drivers.Env{Bus: r.bus.Device("door-35"), Logger: slog.New(slog.DiscardHandler), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*osdp.Device)
	var evs []osdp.Event
	for i := 0; ; i++ {
		recs, err := d.Poll(ctx)
		evs = append(evs, onlineEvents(d)...)
		if err == nil && recs[0].Fields["online"].Bool() {
			break
		}
		if i == 100 {
			t.Fatalf("reader not online: %v", err)
		}
	}
	rd.SetSilent(true)
	var last bool
	for range 10 {
		clk.Add(time.Second)
		recs, err := d.Poll(ctx)
		evs = append(evs, onlineEvents(d)...)
		if err == nil {
			last = recs[0].Fields["online"].Bool()
		}
	}
	if st := d.PD().Status().State; st != osdp.StateOffline {
		t.Fatalf("state %v after 10 s of silence", st)
	}
	if last {
		t.Fatal("no record says online=false while the reader is offline")
	}
	if rep := d.Report(); rep["state"] != "offline" {
		t.Errorf("report %v, want state offline", rep)
	}
	rd.SetSilent(false)
	for range 70 {
		clk.Add(time.Second)
		recs, err := d.Poll(ctx)
		evs = append(evs, onlineEvents(d)...)
		if err == nil && recs[0].Fields["online"].Bool() {
			last = true
			break
		}
	}
	if !last {
		t.Fatal("the reader never came back online")
	}
	checkPaired(t, evs)
	if k := kinds(evs); len(k) != 3 {
		t.Errorf("link events %v, want online, offline, online", k)
	}
}

// onlineEvents takes the device's events and keeps the online and offline
// ones, as osdp events.
func onlineEvents(d *osdp.Device) []osdp.Event {
	var out []osdp.Event
	for _, r := range d.TakeEvents() {
		if k := r.Fields["kind"].Str(); k == osdp.EventOnline || k == osdp.EventOffline {
			out = append(out, osdp.Event{Kind: k, Time: r.Time})
		}
	}
	return out
}

// waitBus waits until the rig's bus has opened its port.
func waitBus(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.bus.Stats().State != "open" {
		if time.Now().After(deadline) {
			t.Fatal("bus port not open")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The events of one poll share their time; each must still be its own
// InfluxDB point (measurement, tags and time), or all but one are lost.
func TestEventsOfOnePollAreDistinctPoints(t *testing.T) {
	r := newRig(t, 115200)
	waitBus(t, r)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 36, Inputs: 3})
	rd.SetTamper(true)
	rd.SetPower(true)
	for _, in := range []int{0, 2} {
		if err := rd.SetInput(in, true); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	info, _ := drivers.Lookup("osdp")
	dev, err := info.New(drivers.Spec{ID: "door-36", Driver: "osdp", Bus: "rs485-osdp", Unit: 36},
		drivers.Env{Bus: r.bus.Device("door-36"), Logger: slog.New(slog.DiscardHandler), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*osdp.Device)
	if _, err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	evs := d.TakeEvents()
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Fields["kind"].Str()]++
	}
	if kinds["online"] != 1 || kinds["tamper"] != 1 || kinds["power"] < 1 || kinds["input"] != 2 {
		t.Fatalf("events %v, want online, tamper, power and two inputs: %+v", kinds, evs)
	}
	seen := map[string]string{}
	for _, e := range evs {
		keys := make([]string, 0, len(e.Tags))
		for k, v := range e.Tags {
			keys = append(keys, k+"="+v)
		}
		slices.Sort(keys)
		k := e.Measurement + "," + strings.Join(keys, ",") + " " + e.Time.Format(time.RFC3339Nano)
		if prev, dup := seen[k]; dup {
			t.Errorf("events %s and %s share the point %s", prev, e.Fields["kind"].Str(), k)
		}
		seen[k] = e.Fields["kind"].Str()
	}
}
