// Package access makes access decisions at the gateway: a door's readers,
// strike, contact and exit button, the credential set synced from the
// cloud, and the events and alerts a door raises. Nothing in the decision
// path touches the network: a door opens while the uplink is down.
//
// Concepts:
//
//   - Store: the credential set, replaced as a whole by the
//     credentials.sync command (a version number and the full set; an
//     older version is refused, the same one changes nothing). At rest a
//     card number is only an HMAC-SHA256 under a per-gateway random key
//     (credentials.key, mode 0600), so the store file alone does not reveal
//     card numbers. A credential has a validity window (from, until), an
//     optional weekly schedule and an optional list of doors.
//   - Read: a card presented at a reader, as its canonical identity
//     ("facility:number", wiegand.Card.ID; CardID for OSDP raw data). Any
//     reader type feeds a door through Present.
//   - Decision: granted or denied with a Reason. A grant pulses the strike
//     for UnlockTime and asks the reader's Feedback (an OSDP reader's LED
//     and buzzer) to show it; a denial asks it to show that. Each decision
//     is an `access` event record (tags door, reader, result; fields
//     credential — the credential's id, or a short keyed-hash prefix for an
//     unknown card, never the number — reason and latency_ms, from the
//     read to the decision).
//   - Record first: with Config.Record set (the gateway sets it to a
//     durable append to its outbox), a decision's record, and an exit
//     request's, is durable before the strike moves, so a power cut can
//     never leave an opened door without its record.
//   - Door states: closed, open (authorized), forced (the contact opened
//     with no grant or exit request in the last UnlockTime) and held (open
//     longer than HeldTime). Every change is a `door` event; forced and held
//     also raise an `alert` record (rule door_forced / door_held).
//   - Clock: Config.Now gives the time for validity, schedules and the door
//     state machine, so tests run it on a fake clock. Latency is measured
//     on the real clock from Read.Time.
package access

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/payload"
)

// Strike opens the lock for a while without blocking (gpio.Output).
type Strike interface {
	Pulse(d time.Duration) error
}

// Feedback shows a decision on a reader (an OSDP reader's LED and buzzer;
// osdp.Device has these methods).
type Feedback interface {
	Grant(ctx context.Context) error
	Deny(ctx context.Context) error
}

// Door states.
const (
	StateClosed = "closed"
	StateOpen   = "open"
	StateForced = "forced"
	StateHeld   = "held"
)

// Config configures a Door.
type Config struct {
	Name  string // the door tag ("lobby")
	Store *Store
	// Strike is the lock output; nil when a reader drives its own (an
	// OSDP reader's output, through Feedback.Grant).
	Strike Strike
	// Feedback per reader name; readers without one get none.
	Feedback map[string]Feedback
	// UnlockTime is how long a grant or exit request unlocks (default 5 s).
	UnlockTime time.Duration
	// HeldTime is how long the door may stay open (default 30 s).
	HeldTime time.Duration
	// Emit receives access, door and alert records; it must be safe for
	// concurrent use and return quickly. Nil drops them.
	Emit func(payload.Record)
	// Record, when set, receives the access records instead of Emit and
	// returns once the record is durable (or failed): the strike waits
	// for it. It must be safe for concurrent use. A record that fails is
	// logged and the door acts anyway: a broken disk must not lock people
	// out.
	Record func(context.Context, payload.Record) error
	Now    func() time.Time
	Logger *slog.Logger
}

// Read is a credential presented at a reader.
type Read struct {
	Reader string
	Card   string    // canonical identity: "facility:number"
	Time   time.Time // when the read completed (real clock); zero: now
}

// Decision is the outcome of a Read.
type Decision struct {
	Granted    bool
	Reason     Reason
	Credential string // credential id, or a masked hash for unknown cards
	Latency    time.Duration
}

// Door is one door's access logic.
type Door struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	mu         sync.Mutex
	known      bool // contact state known
	state      string
	openedAt   time.Time
	authorized time.Time // opening before this is authorized
}

// NewDoor checks cfg; it does no I/O.
func NewDoor(cfg Config) (*Door, error) {
	if cfg.Name == "" {
		return nil, errors.New("access: door without a name")
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("access: door %s: no credential store", cfg.Name)
	}
	if cfg.UnlockTime == 0 {
		cfg.UnlockTime = 5 * time.Second
	}
	if cfg.HeldTime == 0 {
		cfg.HeldTime = 30 * time.Second
	}
	if cfg.UnlockTime < 0 || cfg.UnlockTime > 5*time.Minute || cfg.HeldTime < 0 {
		return nil, fmt.Errorf("access: door %s: unlock time %v, held time %v: want 1ns..5m and positive", cfg.Name, cfg.UnlockTime, cfg.HeldTime)
	}
	if cfg.Emit == nil {
		cfg.Emit = func(payload.Record) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Door{cfg: cfg, log: cfg.Logger.With("door", cfg.Name), state: StateClosed}, nil
}

// State returns the door's state and whether it is open.
func (d *Door) State() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.state != StateClosed
}

// Present decides on a read, unlocks on a grant, and records the
// decision. It does not wait for reader feedback.
func (d *Door) Present(ctx context.Context, r Read) Decision {
	now := d.cfg.Now()
	id, ok, why := d.cfg.Store.Check(r.Card, d.cfg.Name, now)
	if id == "" {
		id = d.cfg.Store.Mask(r.Card)
	}
	dec := Decision{Granted: ok, Reason: why, Credential: id}
	if !r.Time.IsZero() {
		dec.Latency = time.Since(r.Time)
	}
	result := "denied"
	if ok {
		result = "granted"
	}
	reader := r.Reader
	if reader == "" {
		reader = "unknown"
	}
	d.record(ctx, payload.Record{
		Measurement: "access",
		Tags:        map[string]string{"door": d.cfg.Name, "reader": reader, "result": result},
		Fields: map[string]payload.Value{
			"credential": payload.String(id), "reason": payload.String(string(why)),
			"latency_ms": payload.Float(float64(dec.Latency) / float64(time.Millisecond)),
		},
		Time: now,
	})
	if ok {
		d.unlock(now)
	}
	if fb := d.cfg.Feedback[r.Reader]; fb != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			var err error
			if ok {
				err = fb.Grant(ctx)
			} else {
				err = fb.Deny(ctx)
			}
			if err != nil {
				d.log.Warn("reader feedback failed", "reader", r.Reader, "err", err)
			}
		}()
	}
	return dec
}

// record hands an access record to Record (durable before the caller acts)
// or Emit.
func (d *Door) record(ctx context.Context, r payload.Record) {
	if d.cfg.Record == nil {
		d.cfg.Emit(r)
		return
	}
	if err := d.cfg.Record(ctx, r); err != nil {
		d.log.Error("access record not stored; the door acts on its decision anyway", "reader", r.Tags["reader"], "result", r.Tags["result"], "err", err)
	}
}

// unlock opens the strike and authorizes an opening for UnlockTime.
func (d *Door) unlock(now time.Time) {
	if d.cfg.Strike != nil {
		if err := d.cfg.Strike.Pulse(d.cfg.UnlockTime); err != nil {
			d.log.Error("strike failed", "err", err)
		}
	}
	d.mu.Lock()
	if until := now.Add(d.cfg.UnlockTime); until.After(d.authorized) {
		d.authorized = until
	}
	d.mu.Unlock()
}

// Exit handles the exit button: it records an access event and unlocks.
func (d *Door) Exit(at time.Time) {
	d.record(context.Background(), payload.Record{
		Measurement: "access",
		Tags:        map[string]string{"door": d.cfg.Name, "reader": "exit", "result": "granted"},
		Fields:      map[string]payload.Value{"reason": payload.String(string(ReasonExit))},
		Time:        at,
	})
	d.unlock(at)
}

// Contact handles the door contact: open is true when the door is open.
func (d *Door) Contact(open bool, at time.Time) {
	d.mu.Lock()
	first := !d.known
	d.known = true
	var state string
	switch {
	case !open:
		state = StateClosed
	case d.state != StateClosed && !first:
		d.mu.Unlock()
		return // already open
	case first || !at.After(d.authorized):
		state = StateOpen
		d.openedAt = at
	default:
		state = StateForced
		d.openedAt = at
	}
	if state == d.state && !first {
		d.mu.Unlock()
		return
	}
	d.state = state
	if !open {
		d.authorized = time.Time{} // relock: the grant was used
	}
	d.mu.Unlock()
	d.emitDoor(state, open, at)
	if state == StateForced {
		d.alert("door_forced", "critical", "door "+d.cfg.Name+" forced open", at)
	}
}

// Check raises the held-open alert when the door has been open longer
// than HeldTime; Run calls it every 250 ms, tests call it with a fake time.
func (d *Door) Check(now time.Time) {
	d.mu.Lock()
	if d.state != StateOpen || now.Sub(d.openedAt) <= d.cfg.HeldTime {
		d.mu.Unlock()
		return
	}
	d.state = StateHeld
	open := now.Sub(d.openedAt)
	d.mu.Unlock()
	d.emitDoor(StateHeld, true, now)
	d.alert("door_held", "warning", "door "+d.cfg.Name+" held open for "+strconv.Itoa(int(open/time.Second))+" s", now)
}

func (d *Door) emitDoor(state string, open bool, at time.Time) {
	d.cfg.Emit(payload.Record{
		Measurement: "door",
		Tags:        map[string]string{"door": d.cfg.Name},
		Fields:      map[string]payload.Value{"state": payload.String(state), "open": payload.Bool(open)},
		Time:        at,
	})
}

func (d *Door) alert(rule, severity, msg string, at time.Time) {
	d.log.Warn(msg, "rule", rule)
	d.cfg.Emit(payload.Record{
		Measurement: "alert",
		Tags:        map[string]string{"rule": rule, "severity": severity, "device": d.cfg.Name},
		Fields:      map[string]payload.Value{"message": payload.String(msg)},
		Time:        at,
	})
}

// WiegandHandler adapts a Wiegand reader's frames to Present; keypad keys
// are ignored (PIN entry is not part of the decision).
func (d *Door) WiegandHandler(ctx context.Context, reader string) func(wiegand.Card, time.Time) {
	return func(c wiegand.Card, at time.Time) {
		if c.IsKey() {
			return
		}
		d.Present(ctx, Read{Reader: reader, Card: c.ID(), Time: at})
	}
}

// CardID is the canonical identity of card data from an OSDP RAW reply
// (bits first bit first): "facility:number" for a Wiegand format, else
// "raw:<bits>:<hex>".
func CardID(data []byte, bits int) string {
	if c, err := wiegand.DecodeBytes(data, bits); err == nil && !c.IsKey() {
		return c.ID()
	}
	return "raw:" + strconv.Itoa(bits) + ":" + hex.EncodeToString(data)
}

// CardIDHex is CardID for card data given as hex, as OSDP `reader` card
// events carry it (fields card_hex and bit_count).
func CardIDHex(cardHex string, bits int) (string, error) {
	data, err := hex.DecodeString(cardHex)
	if err != nil || bits < 1 || len(data) != (bits+7)/8 {
		return "", fmt.Errorf("access: card_hex %q with bit_count %d: want (bit_count+7)/8 bytes of hex", cardHex, bits)
	}
	return CardID(data, bits), nil
}

// Run watches the door's contact (active = open) and exit button (active
// = pressed), either of which may be nil, and checks for held-open every
// 250 ms until ctx ends. It waits for pending reader feedback on return.
func (d *Door) Run(ctx context.Context, contact, exit *gpio.Input) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if contact != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- contact.Run(ctx, func(open bool, at time.Time) { d.Contact(open, d.cfg.Now()) })
		}()
	}
	if exit != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- exit.Run(ctx, func(on bool, at time.Time) {
				if on {
					d.Exit(d.cfg.Now())
				}
			})
		}()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case e := <-errs:
			if e != nil && ctx.Err() == nil {
				err = fmt.Errorf("access: door %s: %w", d.cfg.Name, e)
				break loop
			}
		case <-tick.C:
			d.Check(d.cfg.Now())
		}
	}
	cancel()
	wg.Wait()
	d.wg.Wait()
	return err
}

// Close waits for pending reader feedback.
func (d *Door) Close() error {
	d.wg.Wait()
	return nil
}
