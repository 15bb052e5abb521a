package osdp_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/payload"
)

var ctx = context.Background()

func TestCardReadThroughDriver(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 1})
	info, ok := drivers.Lookup("osdp")
	if !ok {
		t.Fatal("osdp driver not registered")
	}
	dev, err := info.New(drivers.Spec{ID: "door-1", Driver: "osdp", Bus: "rs485-osdp", Unit: 1, Tags: map[string]string{"door": "lobby"}},
		drivers.Env{Bus: r.bus.Device("door-1"), Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*osdp.Device)
	online(t, d.PD())
	recs, err := d.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Measurement != "reader" || !recs[0].Fields["online"].Bool() || recs[0].Fields["secure"].Bool() {
		t.Fatalf("status records %+v", recs)
	}
	d.TakeEvents()
	want := rd.PresentWiegand26(1, 1) // H10301: 1 00000001 0000000000000001 0
	if hex.EncodeToString(want) != "80800080" {
		t.Fatalf("wiegand bits %x", want)
	}
	rd.Keys("1234#")
	for range 2 {
		if _, err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	evs := d.TakeEvents()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	c := evs[0]
	if c.Measurement != "reader" || c.Tags["device"] != "door-1" || c.Tags["reader"] != "0" || c.Tags["door"] != "lobby" ||
		c.Fields["kind"].Str() != "card" || c.Fields["card_hex"].Str() != "80800080" || c.Fields["bit_count"].Int() != 26 ||
		c.Fields["format"].Str() != "wiegand" || c.Time.IsZero() {
		t.Fatalf("card event %+v", c)
	}
	if k := evs[1]; k.Fields["kind"].Str() != "keypad" || k.Fields["keys"].Str() != "1234#" {
		t.Fatalf("keypad event %+v", k)
	}
	// The same card comes as a typed event for the door; the keypad does not.
	cards := d.TakeCards()
	if len(cards) != 1 || cards[0].Reader != "door-1" || hex.EncodeToString(cards[0].Data) != "80800080" ||
		cards[0].Bits != 26 || !cards[0].Time.Equal(c.Time) {
		t.Fatalf("card reads %+v", cards)
	}
	if again := d.TakeCards(); len(again) != 0 {
		t.Errorf("card reads taken twice: %+v", again)
	}
}

// TestFrameCheckIsCRCError: a frame whose CRC or checksum fails is
// drivers.ErrCRC to the gateway, which counts it without naming osdp.
func TestFrameCheckIsCRCError(t *testing.T) {
	f := osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdPoll}
	raw, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0xFF
	_, err = osdp.Decode(raw)
	if !errors.Is(err, osdp.ErrCheck) || !errors.Is(err, drivers.ErrCRC) || errors.Is(err, osdp.ErrFrame) {
		t.Errorf("corrupt crc: %v: want ErrCheck and drivers.ErrCRC", err)
	}
}

func TestWritePoints(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 2, Outputs: 2})
	d, err := osdp.New(drivers.Spec{ID: "gate", Unit: 2, Options: map[string]any{"strike_output": 1, "open_time": "3s"}},
		drivers.Env{Bus: r.bus.Device("gate"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	online(t, d.PD())
	for _, w := range []struct {
		point string
		v     payload.Value
	}{
		{"output.0", payload.Float(3.5)}, {"output.1", payload.Bool(true)}, {"led", payload.String("green")},
		{"buzzer", payload.Int(2)}, {"text", payload.String("WELCOME")},
	} {
		if err := d.Write(ctx, w.point, w.v); err != nil {
			t.Fatalf("write %s: %v", w.point, err)
		}
	}
	if err := d.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	outs := rd.Outputs()
	if len(outs) != 3 || outs[0].Number != 0 || outs[0].Control != osdp.OutTempOn || outs[0].Timer != 35 ||
		outs[1].Number != 1 || outs[1].Control != osdp.OutOnAbort ||
		outs[2].Number != 1 || outs[2].Control != osdp.OutTempOn || outs[2].Timer != 30 {
		t.Fatalf("outputs %+v", outs)
	}
	leds := rd.LEDs()
	if len(leds) != 2 || leds[0].PermOnColor != osdp.ColorGreen || leds[1].TempOnColor != osdp.ColorGreen || leds[1].TempTimer != 30 {
		t.Fatalf("leds %+v", leds)
	}
	if z := rd.Buzzer(); len(z) != 2 || z[0].Count != 2 || z[1].Count != 1 {
		t.Fatalf("buzzer %+v", z)
	}
	if tx := rd.Text(); len(tx) != 1 || tx[0].Text != "WELCOME" {
		t.Fatalf("text %+v", tx)
	}
	for _, bad := range []struct {
		point string
		v     payload.Value
	}{{"output.x", payload.Int(1)}, {"led", payload.String("purple")}, {"door", payload.Bool(true)}, {"text", payload.Int(3)}} {
		if err := d.Write(ctx, bad.point, bad.v); err == nil || !bytes.Contains([]byte(err.Error()), []byte("gate")) {
			t.Errorf("write %s %v: err %v, want an error naming the device", bad.point, bad.v, err)
		}
	}
	if err := d.Write(ctx, "output.5", payload.Float(1)); !errors.Is(err, osdp.ErrNAK) {
		t.Fatalf("out to a missing output: %v, want a nak", err)
	}
}

func TestDriverOptions(t *testing.T) {
	env := drivers.Env{Bus: newRig(t, 9600).bus.Device("x")}
	for _, c := range []struct {
		spec drivers.Spec
		want string
	}{
		{drivers.Spec{ID: "r", Unit: 127}, "unit 127"},
		{drivers.Spec{ID: "r", Options: map[string]any{"colour": 1}}, `option "colour"`},
		{drivers.Spec{ID: "r", Options: map[string]any{"secure_channel": "yes"}}, "secure_channel"},
		{drivers.Spec{ID: "r", Options: map[string]any{"secure_channel": true, "scbk": "0102"}}, "32 hex digits"},
		{drivers.Spec{ID: "r", Options: map[string]any{"secure_channel": true}}, "scbk or install mode"},
		{drivers.Spec{ID: "r", Options: map[string]any{"install_mode": true}}, "need secure_channel"},
		{drivers.Spec{ID: "r", Options: map[string]any{"poll_interval": "fast"}}, "poll_interval"},
		{drivers.Spec{ID: "r", Options: map[string]any{"idle_poll": "on"}}, "idle_poll"},
		{drivers.Spec{ID: "r", Options: map[string]any{"idle_poll_gap": "0s"}}, "idle_poll_gap"},
	} {
		_, err := osdp.New(c.spec, env)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%+v: err %v, want one mentioning %q", c.spec, err, c.want)
		}
	}
	if _, err := osdp.New(drivers.Spec{ID: "r"}, drivers.Env{}); err == nil {
		t.Error("no bus accepted")
	}
}

// A reader is polled in its line's idle time unless idle_poll is off, at
// most every idle_poll_gap (10 ms by default).
func TestDriverIdlePollOptions(t *testing.T) {
	env := drivers.Env{Bus: newRig(t, 9600).bus.Device("x")}
	for _, c := range []struct {
		opts map[string]any
		want time.Duration
	}{
		{nil, 10 * time.Millisecond},
		{map[string]any{"idle_poll_gap": "25ms"}, 25 * time.Millisecond},
		{map[string]any{"idle_poll": true, "idle_poll_gap": "5ms"}, 5 * time.Millisecond},
		{map[string]any{"idle_poll": false, "idle_poll_gap": "5ms"}, 0},
	} {
		d, err := osdp.New(drivers.Spec{ID: "r", Unit: 1, Options: c.opts}, env)
		if err != nil {
			t.Fatalf("%v: %v", c.opts, err)
		}
		if got := d.IdleGap(); got != c.want {
			t.Errorf("%v: IdleGap() = %v, want %v", c.opts, got, c.want)
		}
	}
}

func TestSecureChannelInstallModeAndKeySet(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 3, Secure: true, InstallMode: true})
	key := [16]byte{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0x01}
	p := r.pd(t, "door-3", osdp.Config{Addr: 3, Secure: true, InstallMode: true, SCBK: &key})
	evs := online(t, p)
	if !slices.Contains(kinds(evs), osdp.EventOnline) {
		t.Fatalf("events %v", kinds(evs))
	}
	if got, ok := rd.SCBK(); !ok || got != key {
		t.Fatalf("reader key %x %v, want %x", got, ok, key)
	}
	if !rd.Secure() || !p.Status().Secure || rd.Counts().SCUp != 2 {
		t.Fatalf("secure: reader %v cp %v handshakes %d (want 2: scbk-d, then its own key)", rd.Secure(), p.Status().Secure, rd.Counts().SCUp)
	}
	// Card data and a strike pulse under the secure channel.
	rd.PresentWiegand26(12, 34567)
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	evs = p.TakeEvents()
	if len(evs) != 1 || evs[0].Kind != osdp.EventCard || evs[0].Card.Bits != 26 || !bytes.Equal(evs[0].Card.Data, osdpsim.Wiegand26(12, 34567)) {
		t.Fatalf("events %+v", evs)
	}
	if err := p.Grant(ctx, 0, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if outs := rd.Outputs(); len(outs) != 1 || outs[0].Control != osdp.OutTempOn || outs[0].Timer != 50 {
		t.Fatalf("outputs %+v", outs)
	}
	if c := rd.Counts(); c.MACErrors != 0 || c.NAKs[osdp.NakSCCond] != 0 {
		t.Fatalf("counts %+v", c)
	}

	// The gateway restarts: a fresh CP still configured for install mode
	// finds the reader refusing SCBK-D and uses the reader's own key.
	p2 := r.pd(t, "door-3b", osdp.Config{Addr: 3, Secure: true, InstallMode: true, SCBK: &key})
	online(t, p2)
	if !p2.Status().Secure || rd.Counts().NAKs[osdp.NakSCCond] != 1 {
		t.Fatalf("restart: secure %v, nak 6 count %d", p2.Status().Secure, rd.Counts().NAKs[osdp.NakSCCond])
	}

	// A CP with another key does not get the reader up.
	other := key
	other[0] ^= 0xFF
	p3 := r.pd(t, "door-3c", osdp.Config{Addr: 3, Secure: true, SCBK: &other, Retries: 1})
	err := p3.Poll(ctx)
	if !errors.Is(err, osdp.ErrCryptogram) || p3.Status().State == osdp.StateOnline {
		t.Fatalf("wrong key: %v, state %v", err, p3.Status().State)
	}
}

// A reader without a secure channel that does not say so in its PDCAP
// (no function 9) answers CHLNG with NAK 5: a refusal. (One that says so
// gets no CHLNG: TestNoChallengeToReaderWithoutSecureChannel.)
func TestSecureChannelRequiresKeyOnReader(t *testing.T) {
	r := newRig(t, 115200)
	r.reader(t, osdpsim.ReaderConfig{Addr: 4, Secure: false, Caps: []osdp.Capability{
		{Function: osdp.CapCRC, Compliance: 1}, {Function: osdp.CapReaders, Count: 1}}})
	key := [16]byte{1}
	p := r.pd(t, "plain", osdp.Config{Addr: 4, Secure: true, SCBK: &key})
	var err error
	for range 50 {
		if err = p.Poll(ctx); !errors.Is(err, drivers.ErrBusDown) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var nak *osdp.NAKError
	if !errors.As(err, &nak) || nak.Code != osdp.NakSCUnsupp || nak.Command != osdp.CmdChlng || !errors.Is(err, osdp.ErrRefused) {
		t.Fatalf("err %v, want a refusal: nak 5 to chlng", err)
	}
	if c := p.Status().Cause; !strings.Contains(c, "NAK 0x05: the reader does not support the secure channel") {
		t.Errorf("cause %q", c)
	}
}

// The handshake by hand, with the Annex E random numbers on both sides:
// the simulator's CCRYPT and RMAC_I must carry the standard's values, and
// a bad MAC afterwards must drop the channel with NAK 6 in plaintext.
func TestSimulatorHandshakeVectorsAndBadMAC(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 9, Secure: true, InstallMode: true,
		Rand: fixedRand{0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7}})
	h := r.bus.Device("raw")
	send := func(f osdp.Frame) osdp.Frame {
		t.Helper()
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		for range 50 {
			if raw, err = h.Transact(ctx, b, osdp.FrameLen); !errors.Is(err, drivers.ErrBusDown) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		g, err := osdp.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := send(osdp.Frame{Addr: 9, CRC: true, Code: osdp.CmdID, Data: []byte{0}}); g.Code != osdp.ReplyPDID || !g.Reply || g.Addr != 9 {
		t.Fatalf("id reply %+v", g)
	}
	rndA := []byte{0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7}
	g := send(osdp.Frame{Addr: 9, Seq: 1, CRC: true, SCBType: osdp.SCS11, SCBData: []byte{0}, Code: osdp.CmdChlng, Data: rndA})
	cc, err := osdp.ParseCCrypt(g.Data)
	if err != nil || g.Code != osdp.ReplyCCrypt || g.SCBType != osdp.SCS12 {
		t.Fatalf("ccrypt %+v %v", g, err)
	}
	if hex.EncodeToString(cc.PDCryptogram[:]) != "fde5d2f428ec16312471ea3c02bd7796" {
		t.Fatalf("pd cryptogram %x", cc.PDCryptogram)
	}
	scrypt, _ := hex.DecodeString("26d3356e07762d262801fc8e6665a891")
	g = send(osdp.Frame{Addr: 9, Seq: 2, CRC: true, SCBType: osdp.SCS13, SCBData: []byte{0}, Code: osdp.CmdSCrypt, Data: scrypt})
	if g.Code != osdp.ReplyRMACI || hex.EncodeToString(g.Data) != "b2a30057eb98ba2229ec1f875662b524" {
		t.Fatalf("rmac_i %+v % x", g, g.Data)
	}
	if !rd.Secure() {
		t.Fatal("secure channel not up after rmac_i")
	}
	// POLL with a MAC made from the wrong keys.
	wrong := osdp.NewSession([16]byte{}, [8]byte(rndA), [8]byte(cc.RndB))
	wrong.Start()
	b, _ := wrong.Seal(osdp.Frame{Addr: 9, Seq: 3, CRC: true, Code: osdp.CmdPoll}, true)
	raw, err := h.Transact(ctx, b, osdp.FrameLen)
	if err != nil {
		t.Fatal(err)
	}
	g, err = osdp.Decode(raw)
	if err != nil || g.Code != osdp.ReplyNAK || g.SCBType != 0 || len(g.Data) != 1 || g.Data[0] != osdp.NakSCCond {
		t.Fatalf("reply to a bad mac: %+v %v", g, err)
	}
	if rd.Secure() || rd.Counts().MACErrors != 1 {
		t.Fatalf("after a bad mac: secure %v, mac errors %d", rd.Secure(), rd.Counts().MACErrors)
	}
}

func TestSeveralReadersOnOneBus(t *testing.T) {
	r := newRig(t, 38400)
	addrs := []byte{0, 5, 126}
	var readers []*osdpsim.Reader
	var pds []*osdp.PD
	key := [16]byte{0x5A}
	for i, a := range addrs {
		cfg := osdpsim.ReaderConfig{Addr: a}
		pcfg := osdp.Config{Addr: a}
		if i == 1 {
			cfg.Secure, cfg.SCBK = true, &key
			pcfg.Secure, pcfg.SCBK = true, &key
		}
		readers = append(readers, r.reader(t, cfg))
		pds = append(pds, r.pd(t, "door-"+string(rune('a'+i)), pcfg))
	}
	for _, p := range pds {
		online(t, p)
		p.TakeEvents()
	}
	readers[1].PresentWiegand26(7, 7)
	readers[2].Keys("9")
	if err := readers[0].SetInput(1, true); err != nil {
		t.Fatal(err)
	}
	readers[0].SetTamper(true)
	for range 2 {
		for _, p := range pds {
			if err := p.Poll(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := [][]string{kinds(pds[0].TakeEvents()), kinds(pds[1].TakeEvents()), kinds(pds[2].TakeEvents())}
	want := [][]string{{osdp.EventInput, osdp.EventTamper}, {osdp.EventCard}, {osdp.EventKeypad}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("reader at %d: events %v, want %v", addrs[i], got[i], want[i])
		}
	}
	if !pds[1].Status().Secure || pds[0].Status().Secure {
		t.Fatal("secure channel on the wrong reader")
	}
	if st := pds[0].Status(); !st.Local.Tamper || st.Inputs[1] != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestResendAfterLostReply(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "secure"}[secure], func(t *testing.T) {
			r := newRig(t, 115200)
			key := [16]byte{7}
			rd := r.reader(t, osdpsim.ReaderConfig{Addr: 6, Secure: secure, SCBK: &key})
			p := r.pd(t, "door-6", osdp.Config{Addr: 6, Secure: secure, SCBK: &key})
			online(t, p)
			rd.DropReplies(1)
			if err := p.Out(ctx, osdp.Output{Number: 0, Control: osdp.OutTempOn, Timer: 20}); err != nil {
				t.Fatal(err)
			}
			c := rd.Counts()
			if c.Dropped != 1 || c.Resends != 1 || c.ByCode[osdp.CmdOut] != 2 {
				t.Fatalf("counts %+v: want one lost reply, one replayed", c)
			}
			if outs := rd.Outputs(); len(outs) != 1 {
				t.Fatalf("OUT executed %d times, want once", len(outs))
			}
			// The link goes on normally.
			rd.PresentWiegand26(1, 2)
			if err := p.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			if k := kinds(p.TakeEvents()); !slices.Equal(k, []string{osdp.EventCard}) {
				t.Fatalf("events %v", k)
			}
		})
	}
}

func TestBusyRetry(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 8})
	p := r.pd(t, "door-8", osdp.Config{Addr: 8, RetryWait: 5 * time.Millisecond})
	online(t, p)
	rd.Busy(2)
	if err := p.Buzz(ctx, osdp.Buzzer{Tone: 2, On: 1, Off: 1, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if c := rd.Counts(); c.Busy != 2 || len(rd.Buzzer()) != 1 || c.NAKs[osdp.NakSequence] != 0 {
		t.Fatalf("counts %+v, buzzer %d", c, len(rd.Buzzer()))
	}
	rd.Busy(10)
	if err := p.Buzz(ctx, osdp.Buzzer{Tone: 1}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("busy")) {
		t.Fatalf("busy for ever: %v", err)
	}
}

func TestChecksumFallback(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 10, ChecksumOnly: true})
	p := r.pd(t, "old-reader", osdp.Config{Addr: 10})
	online(t, p)
	if p.Status().CRC {
		t.Fatal("still on crc after nak 1")
	}
	if c := rd.Counts(); c.NAKs[osdp.NakCheck] != 1 {
		t.Fatalf("nak 1 count %d, want 1", c.NAKs[osdp.NakCheck])
	}
	rd.Keys("5")
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if k := kinds(p.TakeEvents()); !slices.Equal(k, []string{osdp.EventKeypad}) {
		t.Fatalf("events %v", k)
	}
}

func TestSequenceResync(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 11})
	p := r.pd(t, "door-11", osdp.Config{Addr: 11})
	online(t, p)
	p.TakeEvents()
	// Another master resets the reader's sequence (sequence 0). The CP's
	// next number is then unexpected, until its own numbers happen to match.
	reset, _ := (&osdp.Frame{Addr: 11, CRC: true, Code: osdp.CmdPoll}).Encode()
	var err error
	for range 2 {
		if _, terr := r.bus.Device("other").Transact(ctx, reset, osdp.FrameLen); terr != nil {
			t.Fatal(terr)
		}
		if err = p.Poll(ctx); err != nil {
			break
		}
	}
	var nak *osdp.NAKError
	if !errors.As(err, &nak) || nak.Code != osdp.NakSequence {
		t.Fatalf("poll after the reset: %v, want nak 4", err)
	}
	if p.Status().State == osdp.StateOnline {
		t.Fatal("still online after nak 4: no resync")
	}
	online(t, p)
	if rd.Counts().NAKs[osdp.NakSequence] != 1 {
		t.Fatalf("nak 4 count %d", rd.Counts().NAKs[osdp.NakSequence])
	}
}

func TestOfflineAndBack(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 12})
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	p := r.pd(t, "door-12", osdp.Config{Addr: 12, Now: clk.Now, Retries: 1, BackoffMin: 2 * time.Second})
	online(t, p)
	p.TakeEvents()
	rd.SetSilent(true)
	if err := p.Poll(ctx); !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("silent reader: %v, want a timeout", err)
	}
	if p.Status().State != osdp.StateOnline {
		t.Fatal("offline before 8 s")
	}
	clk.Add(8 * time.Second)
	if err := p.Poll(ctx); !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("silent reader: %v", err)
	}
	evs := p.TakeEvents()
	if p.Status().State != osdp.StateOffline || len(evs) != 1 || evs[0].Kind != osdp.EventOffline || !evs[0].Time.Equal(clk.Now()) {
		t.Fatalf("after 8 s: state %v, events %+v", p.Status().State, evs)
	}
	// Backing off: no traffic for the reader.
	before := rd.Counts().Commands
	rd.SetSilent(false)
	if err := p.Poll(ctx); !errors.Is(err, osdp.ErrOffline) {
		t.Fatalf("during back-off: %v", err)
	}
	if rd.Counts().Commands != before {
		t.Fatal("commands sent during back-off")
	}
	clk.Add(2 * time.Second)
	evs = online(t, p)
	if !slices.Equal(kinds(evs), []string{osdp.EventOnline}) {
		t.Fatalf("events %v", kinds(evs))
	}
}

func TestComSetMovesReader(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 20})
	p := r.pd(t, "door-20", osdp.Config{Addr: 20})
	online(t, p)
	got, err := p.ComSet(ctx, osdp.ComSet{Addr: 21, Baud: 115200})
	if err != nil || got.Addr != 21 {
		t.Fatalf("comset %+v %v", got, err)
	}
	online(t, p)
	if rd.Addr() != 21 {
		t.Fatalf("reader at %d", rd.Addr())
	}
}

func TestBadReplyMACRestartsSecureChannel(t *testing.T) {
	r := newRig(t, 115200)
	key := [16]byte{0xC0, 0xFF, 0xEE}
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 13, Secure: true, SCBK: &key})
	p := r.pd(t, "door-13", osdp.Config{Addr: 13, Secure: true, SCBK: &key})
	online(t, p)
	rd.CorruptMACs(1)
	if err := p.Poll(ctx); !errors.Is(err, osdp.ErrMAC) {
		t.Fatalf("forged reply: %v, want ErrMAC", err)
	}
	if st := p.Status(); st.Secure || st.State == osdp.StateOnline {
		t.Fatalf("after a bad mac: %+v", st)
	}
	online(t, p)
	if !p.Status().Secure || rd.Counts().SCUp != 2 {
		t.Fatalf("secure %v, handshakes %d", p.Status().Secure, rd.Counts().SCUp)
	}
}

func TestPowerAndInputEvents(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 14, Inputs: 3})
	d, err := osdp.New(drivers.Spec{ID: "door-14", Unit: 14}, drivers.Env{Bus: r.bus.Device("door-14"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	online(t, d.PD())
	d.TakeEvents()
	rd.SetPower(true)
	if err := rd.SetInput(2, true); err != nil {
		t.Fatal(err)
	}
	rd.SetPower(false)
	var recs []payload.Record
	for range 4 {
		got, err := d.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 && got[0].Fields["power_fail"].Bool() != true {
			t.Fatalf("status after the power event: %+v", got[0].Fields)
		}
		recs = append(recs, d.TakeEvents()...)
	}
	if len(recs) != 3 {
		t.Fatalf("records %+v", recs)
	}
	if f := recs[0].Fields; f["kind"].Str() != "power" || !f["active"].Bool() {
		t.Fatalf("power failure %+v", f)
	}
	if f := recs[1].Fields; f["kind"].Str() != "input" || f["input"].Int() != 2 || !f["active"].Bool() {
		t.Fatalf("input %+v", f)
	}
	if f := recs[2].Fields; f["kind"].Str() != "power" || f["active"].Bool() {
		t.Fatalf("power back %+v", f)
	}
	if err := rd.SetInput(3, true); err == nil {
		t.Fatal("input 3 of 3 accepted")
	}
}

func TestRunLoop(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 15})
	d, err := osdp.New(drivers.Spec{ID: "door-15", Unit: 15, Options: map[string]any{"poll_interval": "20ms"}},
		drivers.Env{Bus: r.bus.Device("door-15"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	recs := make(chan payload.Record, 16)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx, func(rec payload.Record) { recs <- rec }) }()
	next := func() payload.Record {
		select {
		case rec := <-recs:
			return rec
		case <-time.After(10 * time.Second):
			t.Fatal("no event from the run loop")
		}
		return payload.Record{}
	}
	if rec := next(); rec.Fields["kind"].Str() != "online" {
		t.Fatalf("first event %+v", rec)
	}
	rd.PresentWiegand26(3, 4)
	if rec := next(); rec.Fields["kind"].Str() != "card" || rec.Fields["card_hex"].Str() != hex.EncodeToString(osdpsim.Wiegand26(3, 4)) {
		t.Fatalf("card event %+v", rec)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
}
