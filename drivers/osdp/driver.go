package osdp

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/payload"
)

// Measurement is the measurement of the driver's records: status readings
// and events both.
const Measurement = "reader"

func init() {
	drivers.Register(drivers.Info{
		Name:        "osdp",
		Description: "OSDP v2.2 card readers and keypads on RS-485 (control panel, secure channel)",
		Measurement: Measurement,
		New: func(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
			return New(spec, env)
		},
		Turnaround: Turnaround,
		Bus:        &drivers.Units{Min: 0, Max: 126},
		CardReader: true,
		Options:    Options,
		Example: `- id: lobby-reader
  driver: osdp
  bus: rs485-3
  unit: 1
  options: {secure_channel: true, scbk: 000102030405060708090a0b0c0d0e0f}`,
	})
}

// Device is one OSDP reader as a gateway device.
type Device struct {
	pd           *PD
	spec         drivers.Spec
	pollInterval time.Duration
	strike       byte
	openTime     time.Duration
	idleGap      time.Duration // 0: not polled in the line's idle time

	mu    sync.Mutex
	cards []drivers.CardRead // card reads of the events taken, for TakeCards
}

// Interface guards.
var (
	_ drivers.Device      = (*Device)(nil)
	_ drivers.EventSource = (*Device)(nil)
	_ drivers.Writer      = (*Device)(nil)
	_ drivers.CardSource  = (*Device)(nil)
	_ drivers.Reporter    = (*Device)(nil)
)

// Options are the keys of an osdp device's options.
var Options = schema.Schema{
	{Key: "secure_channel", Kind: schema.Bool, Default: "false", Doc: "run the secure channel"},
	{Key: "scbk", Kind: schema.String, Doc: "the reader's own 16-byte key, 32 hex digits",
		Valid: func(s string) error { _, err := ParseKey(s); return err }},
	{Key: "install_mode", Kind: schema.Bool, Default: "false", Doc: "handshake with SCBK-D; with scbk, give the reader its key by KEYSET"},
	{Key: "checksum", Kind: schema.Bool, Default: "false", Doc: "start with checksums instead of CRC-16"},
	{Key: "poll_interval", Kind: schema.Duration, Default: "50ms", Doc: "poll interval of Run (the gateway uses the device's poll setting)"},
	{Key: "offline_after", Kind: schema.Duration, Default: "8s", Doc: "no valid reply for this long: offline"},
	{Key: "idle_poll", Kind: schema.Bool, Default: "true", Doc: "in the gateway, also poll the reader in its line's idle time, round-robin with the line's other readers, so a card reaches the door within a poll cycle; the device's poll still paces its status readings"},
	{Key: "idle_poll_gap", Kind: schema.Duration, Default: "10ms", Doc: "shortest time between two idle-time polls of the reader (bounds what a lone reader on a fast line costs)"},
	{Key: "strike_output", Kind: schema.Int, Min: 0, Max: 255, Default: "0", Doc: "the reader output a grant pulses"},
	{Key: "open_time", Kind: schema.Duration, Default: "5s", Doc: "how long a grant opens the strike"},
}

// New builds a device from its spec: Spec.Unit is the reader's address. It
// does no I/O.
func New(spec drivers.Spec, env drivers.Env) (*Device, error) {
	where := fmt.Sprintf("osdp: %s", spec.ID)
	if env.Bus == nil {
		return nil, fmt.Errorf("%s: no bus: an osdp reader sits on an rs-485 bus", where)
	}
	if spec.Unit < 0 || spec.Unit > 126 {
		return nil, fmt.Errorf("%s: unit %d: want an osdp address 0..126", where, spec.Unit)
	}
	if err := drivers.CheckOptions("osdp", spec, Options); err != nil {
		return nil, err
	}
	o := opts{spec.Options, where}
	cfg := Config{Name: spec.ID, Addr: byte(spec.Unit), Logger: env.Logger, Now: env.Now}
	var err error
	d := &Device{spec: spec, pollInterval: 50 * time.Millisecond, openTime: 5 * time.Second, idleGap: DefaultIdleGap}
	if cfg.Secure, err = o.bool("secure_channel"); err != nil {
		return nil, err
	}
	if cfg.InstallMode, err = o.bool("install_mode"); err != nil {
		return nil, err
	}
	if cfg.Checksum, err = o.bool("checksum"); err != nil {
		return nil, err
	}
	if s, ok, err := o.str("scbk"); err != nil {
		return nil, err
	} else if ok {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("%s: option scbk: %w", where, err)
		}
		cfg.SCBK = &k
	}
	if (cfg.SCBK != nil || cfg.InstallMode) && !cfg.Secure {
		return nil, fmt.Errorf("%s: scbk and install_mode need secure_channel: true", where)
	}
	if v, ok, err := o.dur("poll_interval"); err != nil {
		return nil, err
	} else if ok {
		d.pollInterval = v
	}
	if v, ok, err := o.dur("idle_poll_gap"); err != nil {
		return nil, err
	} else if ok {
		d.idleGap = v
	}
	if _, set := spec.Options["idle_poll"]; set {
		on, err := o.bool("idle_poll")
		if err != nil {
			return nil, err
		}
		if !on {
			d.idleGap = 0
		}
	}
	if v, ok, err := o.dur("offline_after"); err != nil {
		return nil, err
	} else if ok {
		cfg.OfflineAfter = v
	}
	if v, ok, err := o.dur("open_time"); err != nil {
		return nil, err
	} else if ok {
		d.openTime = v
	}
	if v, ok, err := o.int("strike_output", 0, 255); err != nil {
		return nil, err
	} else if ok {
		d.strike = byte(v)
	}
	if d.pd, err = NewPD(env.Bus, cfg); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseKey reads a 16-byte key written as 32 hex digits (spaces and colons
// allowed between bytes).
func ParseKey(s string) ([16]byte, error) {
	var k [16]byte
	clean := strings.NewReplacer(" ", "", ":", "", "-", "").Replace(s)
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != 16 {
		return k, fmt.Errorf("key %q: want 32 hex digits (16 bytes)", s)
	}
	copy(k[:], b)
	return k, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type opts struct {
	m     map[string]any
	where string
}

func (o opts) bool(k string) (bool, error) {
	v, ok := o.m[k]
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, fmt.Errorf("%s: option %s: %v (%T): want true or false", o.where, k, v, v)
	}
	return b, nil
}

func (o opts) str(k string) (string, bool, error) {
	v, ok := o.m[k]
	if !ok {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", false, fmt.Errorf("%s: option %s: %v (%T): want a string", o.where, k, v, v)
	}
	return s, true, nil
}

func (o opts) dur(k string) (time.Duration, bool, error) {
	v, ok := o.m[k]
	if !ok {
		return 0, false, nil
	}
	var d time.Duration
	switch x := v.(type) {
	case time.Duration:
		d = x
	case string:
		var err error
		if d, err = time.ParseDuration(x); err != nil {
			return 0, false, fmt.Errorf("%s: option %s: %q: want a duration like 500ms or 8s", o.where, k, x)
		}
	default:
		return 0, false, fmt.Errorf("%s: option %s: %v (%T): want a duration like 500ms or 8s", o.where, k, v, v)
	}
	if d <= 0 {
		return 0, false, fmt.Errorf("%s: option %s: %s: want more than zero", o.where, k, d)
	}
	return d, true, nil
}

func (o opts) int(k string, lo, hi int) (int, bool, error) {
	v, ok := o.m[k]
	if !ok {
		return 0, false, nil
	}
	var n int
	switch x := v.(type) {
	case int:
		n = x
	case int64:
		n = int(x)
	case uint64:
		n = int(x)
	case float64:
		if x != float64(int(x)) {
			return 0, false, fmt.Errorf("%s: option %s: %v: want a whole number %d..%d", o.where, k, x, lo, hi)
		}
		n = int(x)
	default:
		return 0, false, fmt.Errorf("%s: option %s: %v (%T): want a whole number %d..%d", o.where, k, v, v, lo, hi)
	}
	if n < lo || n > hi {
		return 0, false, fmt.Errorf("%s: option %s: %d: want %d..%d", o.where, k, n, lo, hi)
	}
	return n, true, nil
}

// PD is the device's control-panel state machine, for the access logic's
// direct calls (Grant, Deny, Out, SetLED, ...).
func (d *Device) PD() *PD { return d.pd }

// DefaultIdleGap is the default of the idle_poll_gap option.
const DefaultIdleGap = 10 * time.Millisecond

// IdleGap is the shortest time between two polls of the reader in its
// line's idle time (the idle_poll_gap option), or 0 when idle_poll is off.
// The gateway polls a reader with a non-zero IdleGap through PollEvents,
// round-robin with the line's other readers, besides its scheduled Poll.
func (d *Device) IdleGap() time.Duration { return d.idleGap }

// PollEvents is the idle-time poll that brings card reads in fast
// (PD.PollIdle): one POLL (bringing the reader up first when needed),
// whose report TakeEvents hands out, without a status record and without
// resends; a reader busy with another call is skipped (nil). Status
// readings stay with Poll, on the device's own schedule.
func (d *Device) PollEvents(ctx context.Context) error {
	_, err := d.pd.PollIdle(ctx)
	return err
}

// PollInterval is the poll_interval option, for Run.
func (d *Device) PollInterval() time.Duration { return d.pollInterval }

// Poll brings the reader up when needed and polls it once. It returns one
// status record: online, secure, tamper, power_fail. Once the reader is
// offline or refuses the link (the offline event raised), that is the
// reading: the record says online=false and the poll does not fail, so
// that the last values and the events follow the reader. A poll that
// fails while the link is still up (a missed reply, noise) is an error.
func (d *Device) Poll(ctx context.Context) ([]payload.Record, error) {
	err := d.pd.Poll(ctx)
	st := d.pd.Status()
	if err != nil && st.State != StateOffline && st.State != StateRefused {
		return nil, err
	}
	fields := map[string]payload.Value{
		"online":     payload.Bool(st.State == StateOnline),
		"secure":     payload.Bool(st.Secure),
		"tamper":     payload.Bool(st.Local.Tamper),
		"power_fail": payload.Bool(st.Local.Power),
	}
	return []payload.Record{{Measurement: Measurement, Tags: d.tags(nil), Fields: fields}}, nil
}

// Report gives the reader's link on the status page: state (init,
// online, offline, refused), secure, and for an offline or refused reader
// the cause and the next attempt.
func (d *Device) Report() map[string]any {
	st := d.pd.Status()
	r := map[string]any{"state": st.State.String(), "secure": st.Secure}
	if st.Cause != "" {
		r["cause"] = st.Cause
	}
	if !st.RetryAt.IsZero() {
		r["next_try"] = st.RetryAt.Format(time.RFC3339)
	}
	return r
}

func (d *Device) tags(extra map[string]string) map[string]string {
	t := make(map[string]string, len(d.spec.Tags)+1+len(extra))
	for k, v := range d.spec.Tags {
		t[k] = v
	}
	t["device"] = d.spec.ID
	for k, v := range extra {
		t[k] = v
	}
	return t
}

// TakeEvents returns the reader's events as `reader` records with tags
// device, reader and code (the kind, "input.N" for input N, so that the
// events of one poll stay distinct points), and field kind (card, keypad, tamper, power, input,
// online, offline) plus: card_hex, bit_count, format for cards; keys for
// keypads; active for tamper, power (a failure) and inputs; input for
// inputs; reason for offline.
func (d *Device) TakeEvents() []payload.Record {
	evs := d.pd.TakeEvents()
	if len(evs) == 0 {
		return nil
	}
	out := make([]payload.Record, 0, len(evs))
	var cards []drivers.CardRead
	for _, e := range evs {
		out = append(out, d.EventRecord(e))
		if e.Kind == EventCard {
			cards = append(cards, drivers.CardRead{Reader: d.spec.ID, Data: bytes.Clone(e.Card.Data), Bits: e.Card.Bits, Time: e.Time})
		}
	}
	if len(cards) > 0 {
		d.mu.Lock()
		d.cards = append(d.cards, cards...)
		if n := len(d.cards) - maxPendingCards; n > 0 {
			d.cards = append(d.cards[:0], d.cards[n:]...) // nobody takes them: keep the newest
		}
		d.mu.Unlock()
	}
	return out
}

// maxPendingCards bounds the card reads kept for TakeCards.
const maxPendingCards = 64

// TakeCards returns the card reads among the events TakeEvents returned
// since the last call, as typed events for the reader's door.
func (d *Device) TakeCards() []drivers.CardRead {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.cards
	d.cards = nil
	return out
}

// EventRecord turns an event into its record.
func (d *Device) EventRecord(e Event) payload.Record {
	f := map[string]payload.Value{"kind": payload.String(e.Kind)}
	switch e.Kind {
	case EventCard:
		f["card_hex"] = payload.String(e.Card.Hex())
		f["bit_count"] = payload.Int(int64(e.Card.Bits))
		format := "unspecified"
		switch e.Card.Format {
		case 1:
			format = "wiegand"
		case 0xFF:
			format = "text"
		}
		f["format"] = payload.String(format)
	case EventKeypad:
		f["keys"] = payload.String(e.Keys)
	case EventTamper, EventPower:
		f["active"] = payload.Bool(e.Active)
	case EventInput:
		f["active"] = payload.Bool(e.Active)
		f["input"] = payload.Int(int64(e.Input))
	case EventOffline:
		f["reason"] = payload.String(e.Reason)
	}
	code := e.Kind
	if e.Kind == EventInput {
		code += "." + strconv.Itoa(e.Input)
	}
	return payload.Record{Measurement: Measurement, Tags: d.tags(map[string]string{"reader": strconv.Itoa(int(e.Reader)), "code": code}),
		Fields: f, Time: e.Time}
}

// Write sets a point:
//
//	led        string colour (off, red, green, amber, blue) or its number: the permanent LED colour
//	buzzer     int number of short beeps (0 stops the buzzer)
//	output.N   number: seconds to pulse output N on (a strike); bool: permanently on or off
//	text       string shown on the reader's display
func (d *Device) Write(ctx context.Context, point string, v payload.Value) error {
	where := fmt.Sprintf("osdp: %s: write %s", d.spec.ID, point)
	if !v.Valid() {
		return fmt.Errorf("%s: no value", where)
	}
	switch {
	case point == "led":
		c, err := colour(v)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return d.pd.SetLED(ctx, LED{PermControl: 1, PermOn: 1, PermOff: 0, PermOnColor: c, PermOffColor: c})
	case point == "buzzer":
		n := v.Int()
		if v.Type() == payload.TypeString || n < 0 || n > 255 {
			return fmt.Errorf("%s: %s: want a count of beeps 0..255", where, v.Str())
		}
		if n == 0 {
			return d.pd.Buzz(ctx, Buzzer{Tone: 1})
		}
		return d.pd.Buzz(ctx, Buzzer{Tone: 2, On: 2, Off: 2, Count: byte(n)})
	case point == "text":
		if v.Type() != payload.TypeString {
			return fmt.Errorf("%s: %s: want a string", where, v.Str())
		}
		return d.pd.ShowText(ctx, Text{Command: 1, Text: v.Str()})
	case strings.HasPrefix(point, "output."):
		n, err := strconv.Atoi(strings.TrimPrefix(point, "output."))
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("%s: want output.N with N 0..255", where)
		}
		switch v.Type() {
		case payload.TypeBool:
			c := OutOffAbort
			if v.Bool() {
				c = OutOnAbort
			}
			return d.pd.Out(ctx, Output{Number: byte(n), Control: c})
		case payload.TypeInt, payload.TypeFloat:
			secs := v.Float()
			if secs < 0 || secs > 6553 {
				return fmt.Errorf("%s: %v s: want a pulse of 0..6553 s", where, secs)
			}
			if secs == 0 {
				return d.pd.Out(ctx, Output{Number: byte(n), Control: OutOffAbort})
			}
			return d.pd.Out(ctx, Output{Number: byte(n), Control: OutTempOn, Timer: durTenths(time.Duration(secs * float64(time.Second)))})
		}
		return fmt.Errorf("%s: %s: want seconds to pulse or true/false", where, v.Str())
	}
	return fmt.Errorf("osdp: %s: unknown point %q (points: led, buzzer, output.N, text)", d.spec.ID, point)
}

func colour(v payload.Value) (byte, error) {
	if v.Type() == payload.TypeString {
		switch strings.ToLower(v.Str()) {
		case "off", "black":
			return ColorBlack, nil
		case "red":
			return ColorRed, nil
		case "green":
			return ColorGreen, nil
		case "amber":
			return ColorAmber, nil
		case "blue":
			return ColorBlue, nil
		}
		return 0, fmt.Errorf("colour %q: want off, red, green, amber or blue", v.Str())
	}
	n := v.Int()
	if n < 0 || n > 255 || v.Type() == payload.TypeBool {
		return 0, fmt.Errorf("colour %s: want a colour name or 0..255", v.Str())
	}
	return byte(n), nil
}

// Grant signals an accepted credential on the device: the strike output
// opens for open_time, the LED shows green and the buzzer beeps once.
func (d *Device) Grant(ctx context.Context) error {
	return d.pd.Grant(ctx, 0, d.strike, d.openTime)
}

// Deny signals a refused credential: red LED and three beeps.
func (d *Device) Deny(ctx context.Context) error { return d.pd.Deny(ctx, 0) }

// Run polls the reader every poll_interval until ctx ends and hands each
// event record to handle: a control loop of its own, for use outside the
// gateway's scheduler (a bench tool, a door controller process).
func (d *Device) Run(ctx context.Context, handle func(payload.Record)) error {
	return d.pd.Run(ctx, d.pollInterval, func(e Event) { handle(d.EventRecord(e)) })
}
