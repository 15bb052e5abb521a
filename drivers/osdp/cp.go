package osdp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
)

// Defaults of Config.
const (
	DefaultOfflineAfter = 8 * time.Second
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = 300 * time.Second
	DefaultRetries      = 2
	DefaultRetryWait    = 50 * time.Millisecond
	DefaultBusyRetries  = 5
	maxQueuedEvents     = 1024
)

// ErrOffline means the reader is offline and the CP waits before it tries
// to bring it up again.
var ErrOffline = errors.New("reader is offline")

// ErrRefused means the reader answers but refuses the link the CP is
// configured for (it demands the secure channel, the key is wrong, it has
// no secure channel): the CP backs off, up to RefusedBackoffMax, and
// Status().Cause says why.
var ErrRefused = errors.New("reader refuses the link")

// ErrNoSecureChannel means the reader's PDCAP says it has no secure
// channel (function 9, compliance 0) while the CP is configured for one.
var ErrNoSecureChannel = errors.New("the reader has no secure channel (PDCAP function 9, compliance 0) but the device is configured with secure_channel: true")

// RefusedBackoffMax caps the back-off of a reader that refuses the link
// (BackoffMax caps it further when lower).
const RefusedBackoffMax = 60 * time.Second

// Config is the CP's setting for one reader.
type Config struct {
	Name string // the device's name in errors and logs
	Addr byte   // 0..126
	// Secure runs the secure channel; commands are refused until it is up.
	Secure bool
	// SCBK is the reader's own base key. With InstallMode it is given to
	// the reader by KEYSET after a handshake with SCBK-D.
	SCBK *[16]byte
	// InstallMode lets the CP use SCBK-D (for a reader fresh from the box).
	InstallMode bool
	// NoMark leaves out the 0xFF mark byte before commands.
	NoMark bool
	// Checksum starts in checksum mode instead of CRC-16.
	Checksum bool

	OfflineAfter time.Duration // no valid reply for this long: offline (8 s)
	BackoffMin   time.Duration // first wait before bringing an offline reader up again (1 s)
	BackoffMax   time.Duration // longest such wait (300 s)
	Retries      int           // resends (same sequence number) after a missed reply within one call (2)
	RetryWait    time.Duration // wait before a resend and after BUSY (50 ms)
	BusyRetries  int           // resends after BUSY (5)

	Rand   io.Reader        // random numbers for CHLNG (crypto/rand)
	Now    func() time.Time // clock for offline and back-off decisions
	Logger *slog.Logger
}

func (c *Config) check() error {
	if c.Addr > 126 {
		return fmt.Errorf("osdp: %s: address %d: want 0..126", c.Name, c.Addr)
	}
	if c.Secure && c.SCBK == nil && !c.InstallMode {
		return fmt.Errorf("osdp: %s: secure channel needs an scbk or install mode", c.Name)
	}
	if c.OfflineAfter == 0 {
		c.OfflineAfter = DefaultOfflineAfter
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.RetryWait == 0 {
		c.RetryWait = DefaultRetryWait
	}
	if c.BusyRetries == 0 {
		c.BusyRetries = DefaultBusyRetries
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Event kinds.
const (
	EventCard    = "card"
	EventKeypad  = "keypad"
	EventTamper  = "tamper"
	EventPower   = "power"
	EventInput   = "input"
	EventOnline  = "online"
	EventOffline = "offline"
)

// Event is something a reader reported, or a change of its link.
type Event struct {
	Kind   string // EventCard ...
	Time   time.Time
	Reader byte   // reader number on the PD (card, keypad)
	Card   Card   // EventCard
	Keys   string // EventKeypad
	Input  int    // EventInput: input number
	Active bool   // EventTamper, EventPower (power failure), EventInput
	Reason string // EventOffline: why
}

// State is a reader's link state.
type State int

// Link states.
const (
	StateInit    State = iota // not yet up (or resynchronising)
	StateOnline               // answering, handshake done
	StateOffline              // no valid reply for OfflineAfter; backing off
	StateRefused              // the reader answers but refuses the link; backing off
)

func (s State) String() string {
	return [...]string{"init", "online", "offline", "refused"}[s]
}

// Status is a snapshot of a reader.
type Status struct {
	State    State
	Secure   bool // the secure channel is up
	ID       PDID
	Caps     Caps
	Local    LocalStatus
	Inputs   []byte
	CRC      bool // frames use CRC-16 (false: checksum)
	LastSeen time.Time
	Cause    string    // StateOffline, StateRefused: why
	RetryAt  time.Time // StateOffline, StateRefused: the next attempt
}

// PD is the CP's side of one reader on a shared line. Its methods may be
// called from several goroutines; exchanges with the reader are serialized.
type PD struct {
	cfg Config
	bus drivers.Transactor
	log *slog.Logger

	mu         sync.Mutex
	state      State
	seq        byte
	crc        bool
	sc         *Session
	useDefault bool // handshake with SCBK-D
	pending    *sent
	lastReply  time.Time
	since      time.Time // when the current attempt to come up began
	backoff    time.Duration
	retryAt    time.Time
	cause      string // why the reader is offline or refused
	announced  bool   // the last link event was online: events stay paired
	id         PDID
	caps       Caps
	local      LocalStatus
	haveLocal  bool
	inputs     []byte
	events     []Event
	lastEvent  time.Time // time of the last event, which the next one follows
	dropped    int
	oneShot    bool // PollIdle: no resends or BUSY waits within the call
}

// sent is a command on the wire: what a resend repeats byte for byte.
type sent struct {
	raw          []byte
	code, seq    byte
	scb, keyType byte   // handshake SCB, when any
	data         []byte // plaintext data, to re-encode after NAK 1
}

// NewPD makes the CP side of the reader at cfg.Addr. It does no I/O.
func NewPD(bus drivers.Transactor, cfg Config) (*PD, error) {
	if bus == nil {
		return nil, fmt.Errorf("osdp: %s: no bus", cfg.Name)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	p := &PD{cfg: cfg, bus: bus, crc: !cfg.Checksum, useDefault: cfg.InstallMode}
	p.log = cfg.Logger.With("device", cfg.Name, "osdp_addr", cfg.Addr)
	p.since = cfg.Now()
	return p, nil
}

func (p *PD) errf(format string, a ...any) error {
	return fmt.Errorf("osdp: %s (addr %d): %w", p.cfg.Name, p.cfg.Addr, fmt.Errorf(format, a...))
}

// Status returns a snapshot of the reader.
func (p *PD) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{State: p.state, Secure: p.sc != nil, ID: p.id, Caps: p.caps, Local: p.local,
		Inputs: append([]byte(nil), p.inputs...), CRC: p.crc, LastSeen: p.lastReply}
	if p.state == StateOffline || p.state == StateRefused {
		st.Cause, st.RetryAt = p.cause, p.retryAt
	}
	return st
}

// TakeEvents returns and forgets the events since the last call.
func (p *PD) TakeEvents() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := p.events
	p.events = nil
	if p.dropped > 0 {
		p.log.Warn("osdp events dropped: queue full", "dropped", p.dropped)
		p.dropped = 0
	}
	return ev
}

func (p *PD) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = p.cfg.Now()
	}
	// Events keep their order in time, each at its own instant: a coarse
	// clock would give the events of one reply one time, and InfluxDB keeps
	// one point per measurement, tags and time.
	if !e.Time.After(p.lastEvent) && !p.lastEvent.IsZero() {
		e.Time = p.lastEvent.Add(time.Nanosecond)
	}
	p.lastEvent = e.Time
	if len(p.events) >= maxQueuedEvents {
		p.events = p.events[1:]
		p.dropped++
	}
	p.events = append(p.events, e)
}

// Poll brings the reader up when needed (ID, CAP, secure channel, KEYSET)
// and sends one POLL; what the reader reports becomes events.
func (p *PD) Poll(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.poll(ctx)
}

// poll is Poll with p.mu held.
func (p *PD) poll(ctx context.Context) error {
	p.restartIdle()
	if err := p.ensureOnline(ctx); err != nil {
		return err
	}
	r, err := p.exchange(ctx, CmdPoll, nil)
	if err != nil {
		return p.after(err)
	}
	p.absorb(r)
	return nil
}

// PollIdle is Poll for the line's idle time: it polls only when nobody
// else is talking to the reader, and resends nothing within the call (a
// command that got no reply goes out again, same bytes, at the next
// exchange, as after any missed reply; BUSY ends the call too). It
// reports polled=false without touching the line when another call holds
// the reader (a scheduled poll, a grant's commands): the caller's next turn
// will do. So a reader that stops answering costs the line's idle time one
// reply timeout per attempt, not the resends and waits of a scheduled poll;
// an offline reader's back-off applies as with Poll.
func (p *PD) PollIdle(ctx context.Context) (polled bool, err error) {
	if !p.mu.TryLock() {
		return false, nil
	}
	defer p.mu.Unlock()
	p.oneShot = true
	defer func() { p.oneShot = false }()
	return true, p.poll(ctx)
}

// after checks the offline rule after a failed exchange.
func (p *PD) after(err error) error {
	if err == nil {
		return nil
	}
	now := p.cfg.Now()
	if p.state == StateOnline && now.Sub(p.lastReply) >= p.cfg.OfflineAfter {
		p.goOffline(fmt.Sprintf("no valid reply for %s: %v", now.Sub(p.lastReply).Round(time.Millisecond), err))
	}
	return err
}

// idleRestart is how long a link may stay unpolled before the CP starts it
// over: 3/4 of OfflineAfter, the spec's 8 s after which a reader drops its
// secure channel and takes the CP for gone.
func (p *PD) idleRestart() time.Duration { return p.cfg.OfflineAfter * 3 / 4 }

// restartIdle starts an online link over, quietly, when it has not been
// used for idleRestart: polled slower than the spec's timeout, the reader
// has dropped its secure channel (and may expect sequence 0), so the next
// command would be refused. The link stays announced online: a
// successful restart raises no second online event.
func (p *PD) restartIdle() {
	if p.state != StateOnline {
		return
	}
	now := p.cfg.Now()
	if idle := now.Sub(p.lastReply); idle >= p.idleRestart() {
		p.log.Debug("osdp link idle longer than the reader keeps it; starting it over", "idle", idle)
		// Offline still counts from the last reply.
		p.state, p.since = StateInit, p.lastReply
		p.reset()
	}
}

func (p *PD) goOffline(reason string) {
	p.announce(false, reason)
	p.state, p.cause = StateOffline, reason
	p.reset()
	p.backoff = min(max(2*p.backoff, p.cfg.BackoffMin), p.cfg.BackoffMax)
	p.retryAt = p.cfg.Now().Add(p.backoff)
}

// refuse backs off from a reader that refuses the link, for cause.
func (p *PD) refuse(cause string) {
	p.announce(false, cause)
	if p.state != StateRefused || p.cause != cause {
		p.log.Warn("osdp reader refuses the link; backing off", "cause", cause)
	}
	p.state, p.cause = StateRefused, cause
	p.reset()
	p.backoff = min(max(2*p.backoff, p.cfg.BackoffMin), p.cfg.BackoffMax, RefusedBackoffMax)
	p.retryAt = p.cfg.Now().Add(p.backoff)
}

// announce raises the online or offline event when the link's announced
// state changes, so that the two always alternate.
func (p *PD) announce(up bool, reason string) {
	if up == p.announced {
		return
	}
	p.announced = up
	if up {
		p.emit(Event{Kind: EventOnline})
		p.log.Info("osdp reader online", "secure", p.sc != nil, "crc", p.crc,
			"vendor", fmt.Sprintf("%06x", p.id.Vendor()), "model", p.id.Model, "serial", p.id.Serial, "firmware", p.id.FirmwareString())
		return
	}
	p.emit(Event{Kind: EventOffline, Reason: reason})
	p.log.Warn("osdp reader offline", "reason", reason)
}

// refusedError is a reader's refusal: it wraps ErrRefused and what the
// reader answered (a *NAKError, ErrCryptogram, ErrNoSecureChannel).
type refusedError struct {
	msg string
	err error
}

func (e *refusedError) Error() string   { return e.msg }
func (e *refusedError) Unwrap() []error { return []error{ErrRefused, e.err} }

// refusal names why a reader refused to come up, "" when err is no
// refusal (a missed reply, line noise).
func (p *PD) refusal(err error) string {
	var nak *NAKError
	switch {
	case errors.Is(err, ErrNoSecureChannel):
		return ErrNoSecureChannel.Error()
	case errors.Is(err, ErrCryptogram):
		return "the reader's cryptogram does not match: wrong scbk (or the reader expects install mode)"
	case !errors.As(err, &nak):
		return ""
	}
	switch {
	case nak.Code == NakSCCond && !p.cfg.Secure:
		return "NAK 0x06: secure channel required (the gateway is configured without a key)"
	case nak.Code == NakSCCond:
		return "NAK 0x06: the reader refused the secure channel (wrong scbk, or the reader expects install mode)"
	case nak.Code == NakSCUnsupp:
		return "NAK 0x05: the reader does not support the secure channel (the device is configured with secure_channel: true)"
	case nak.Code == NakCheck || nak.Code == NakSequence:
		return "" // line noise, a lost frame: the next attempt may go through
	}
	return fmt.Sprintf("NAK 0x%02X: %s (to command %#02x)", nak.Code, NakText(nak.Code), nak.Command)
}

// reset forgets the link: the next command goes out with sequence 0.
func (p *PD) reset() {
	p.seq = 0
	p.sc = nil
	p.pending = nil
}

func (p *PD) ensureOnline(ctx context.Context) error {
	if p.state == StateOnline {
		return nil
	}
	now := p.cfg.Now()
	if (p.state == StateOffline || p.state == StateRefused) && now.Before(p.retryAt) {
		sentinel := ErrOffline
		if p.state == StateRefused {
			sentinel = ErrRefused
		}
		return p.errf("%w: %s; next attempt in %s", sentinel, p.cause, p.retryAt.Sub(now).Round(time.Millisecond))
	}
	// An offline or refused reader stays so through its attempt: one
	// attempt per back-off.
	if err := p.bringUp(ctx); err != nil {
		if cause := p.refusal(err); cause != "" {
			p.refuse(cause)
			return &refusedError{msg: fmt.Sprintf("osdp: %s (addr %d): %v: %s", p.cfg.Name, p.cfg.Addr, ErrRefused, cause), err: err}
		}
		switch {
		case p.state != StateInit:
			p.goOffline(err.Error())
		case p.cfg.Now().Sub(p.since) >= p.cfg.OfflineAfter:
			// A reader that never came up is retried after a back-off
			// too, once it has had OfflineAfter to answer.
			p.goOffline(err.Error())
		default:
			p.reset()
		}
		return err
	}
	p.state, p.backoff, p.cause = StateOnline, 0, ""
	p.announce(true, "")
	return nil
}

func (p *PD) bringUp(ctx context.Context) error {
	p.reset()
	r, err := p.exchange(ctx, CmdID, IDData())
	if err != nil {
		return err
	}
	if r.Code != ReplyPDID {
		return p.errf("id: reply %#02x: want pdid (0x45): %w", r.Code, ErrPayload)
	}
	if p.id, err = ParsePDID(r.Data); err != nil {
		return p.errf("id: %w", err)
	}
	if r, err = p.exchange(ctx, CmdCap, IDData()); err != nil {
		return err
	}
	if r.Code != ReplyPDCAP {
		return p.errf("cap: reply %#02x: want pdcap (0x46): %w", r.Code, ErrPayload)
	}
	if p.caps, err = ParsePDCAP(r.Data); err != nil {
		return p.errf("cap: %w", err)
	}
	if sec, listed := p.caps[CapSecurity]; p.cfg.Secure && listed && sec.Compliance&1 == 0 {
		return p.errf("cap: %w; chlng not sent", ErrNoSecureChannel)
	}
	if !p.crc && !p.cfg.Checksum && p.caps.CRC() {
		// A NAK 1 made us fall back, but the reader says it checks CRC-16:
		// that NAK was line noise.
		p.crc = true
	}
	if p.cfg.Secure {
		if err := p.handshake(ctx); err != nil {
			return err
		}
		if p.useDefault && p.cfg.SCBK != nil {
			if err := p.keyset(ctx, *p.cfg.SCBK); err != nil {
				return err
			}
		}
	}
	if r, err = p.exchange(ctx, CmdLStat, nil); err == nil {
		p.absorb(r)
	} else if !isNAK(err, NakUnknown) {
		return err
	}
	if p.caps[CapContactStatus].Count > 0 {
		if r, err = p.exchange(ctx, CmdIStat, nil); err == nil {
			p.absorb(r)
		} else if !isNAK(err, NakUnknown) {
			return err
		}
	}
	return nil
}

func isNAK(err error, code byte) bool {
	var n *NAKError
	return errors.As(err, &n) && n.Code == code
}

// handshake runs CHLNG/CCRYPT/SCRYPT/RMAC_I. With both SCBK-D (install
// mode) and an SCBK it tries the other key when the reader refuses one.
func (p *PD) handshake(ctx context.Context) error {
	err := p.handshakeWith(ctx)
	if err != nil && p.cfg.InstallMode && p.cfg.SCBK != nil &&
		(errors.Is(err, ErrCryptogram) || isNAK(err, NakSCCond)) {
		p.useDefault = !p.useDefault
		p.log.Info("osdp secure channel: reader refused the key, trying the other one", "scbk_d", p.useDefault)
		err = p.handshakeWith(ctx)
	}
	return err
}

func (p *PD) handshakeWith(ctx context.Context) error {
	p.sc = nil
	key, keyType := SCBKD(), byte(0)
	if !p.useDefault {
		key, keyType = *p.cfg.SCBK, 1
	}
	var rndA [8]byte
	if _, err := io.ReadFull(p.cfg.Rand, rndA[:]); err != nil {
		return p.errf("secure channel: random numbers: %w", err)
	}
	r, err := p.exchangeSCB(ctx, CmdChlng, rndA[:], SCS11, keyType)
	if err != nil {
		return err
	}
	if r.Code != ReplyCCrypt {
		return p.errf("chlng: reply %#02x: want ccrypt (0x76): %w", r.Code, ErrPayload)
	}
	cc, err := ParseCCrypt(r.Data)
	if err != nil {
		return p.errf("chlng: %w", err)
	}
	s := NewSession(key, rndA, cc.RndB)
	if err := s.VerifyPDCryptogram(cc.PDCryptogram); err != nil {
		return p.errf("ccrypt (scbk-d %v): %w", p.useDefault, err)
	}
	cp := s.CPCryptogram()
	if r, err = p.exchangeSCB(ctx, CmdSCrypt, cp[:], SCS13, keyType); err != nil {
		return err
	}
	if r.Code != ReplyRMACI {
		return p.errf("scrypt: reply %#02x: want rmac_i (0x78): %w", r.Code, ErrPayload)
	}
	rmac, err := ParseRMACI(r.Data)
	if err != nil {
		return p.errf("scrypt: %w", err)
	}
	if rmac != s.InitialRMAC() {
		return p.errf("rmac_i: %w", ErrCryptogram)
	}
	s.Start()
	p.sc = s
	return nil
}

func (p *PD) keyset(ctx context.Context, key [16]byte) error {
	r, err := p.exchange(ctx, CmdKeySet, KeySetData(key))
	if err != nil {
		return err
	}
	if r.Code != ReplyACK {
		return p.errf("keyset: reply %#02x: want ack: %w", r.Code, ErrPayload)
	}
	p.log.Info("osdp reader took its own secure channel key; new handshake with it")
	p.useDefault = false
	return p.handshakeWith(ctx)
}

// exchange sends a command (sealed when the secure channel is up) and
// returns the reply with plaintext data. NAK replies become *NAKError.
func (p *PD) exchange(ctx context.Context, code byte, data []byte) (Frame, error) {
	return p.exchangeSCB(ctx, code, data, 0, 0)
}

func (p *PD) encode(code byte, data []byte, seq byte, scb, keyType byte) ([]byte, error) {
	f := Frame{Mark: !p.cfg.NoMark, Addr: p.cfg.Addr, Seq: seq, CRC: p.crc, Code: code, Data: data}
	if scb != 0 {
		f.SCBType, f.SCBData = scb, []byte{keyType}
		return f.Encode()
	}
	if p.sc != nil {
		return p.sc.Seal(f, true)
	}
	return f.Encode()
}

func (p *PD) exchangeSCB(ctx context.Context, code byte, data []byte, scb, keyType byte) (Frame, error) {
	if p.pending != nil {
		// A command that got no reply goes out again, same bytes, before
		// anything new: the reader either runs it or replays its answer.
		ps := p.pending
		r, err := p.roundTrip(ctx, ps)
		if err != nil {
			return Frame{}, err
		}
		if ps.code == CmdPoll || ps.code == CmdLStat || ps.code == CmdIStat {
			p.absorb(r)
		}
	}
	raw, err := p.encode(code, data, p.seq, scb, keyType)
	if err != nil {
		return Frame{}, p.errf("command %#02x: %w", code, err)
	}
	s := &sent{raw: raw, code: code, seq: p.seq, scb: scb, keyType: keyType, data: data}
	return p.roundTrip(ctx, s)
}

// roundTrip sends s until it gets a reply (resends on a missed reply,
// BUSY, or NAK 1 after switching to checksums), then applies the sequence
// and NAK rules.
func (p *PD) roundTrip(ctx context.Context, s *sent) (Frame, error) {
	busy, tries := 0, 0
	for {
		r, lost, err := p.transact(ctx, s)
		if err != nil && !lost {
			return Frame{}, err
		}
		if err != nil {
			p.pending = s
			tries++
			if tries > p.retries() || ctx.Err() != nil || errors.Is(err, drivers.ErrBusDown) {
				return Frame{}, err
			}
			if werr := sleep(ctx, p.cfg.RetryWait); werr != nil {
				return Frame{}, err
			}
			continue
		}
		p.pending = nil
		p.lastReply = p.cfg.Now()
		switch r.Code {
		case ReplyBusy:
			busy++
			if busy > p.cfg.BusyRetries || p.oneShot {
				p.pending = s
				return Frame{}, p.errf("command %#02x: reader busy after %d resends", s.code, p.cfg.BusyRetries)
			}
			if err := sleep(ctx, p.cfg.RetryWait); err != nil {
				p.pending = s
				return Frame{}, p.errf("command %#02x: waiting after busy: %w", s.code, err)
			}
			continue
		case ReplyNAK:
			nak, perr := ParseNAK(r.Data, s.code)
			if perr != nil {
				return Frame{}, p.errf("command %#02x: %w", s.code, perr)
			}
			switch nak.Code {
			case NakCheck:
				if p.crc {
					p.log.Info("osdp reader refused crc-16; using checksums")
					p.crc = false
					raw, err := p.encode(s.code, s.data, s.seq, s.scb, s.keyType)
					if err != nil {
						return Frame{}, p.errf("command %#02x: %w", s.code, err)
					}
					s = &sent{raw: raw, code: s.code, seq: s.seq, scb: s.scb, keyType: s.keyType, data: s.data}
					continue
				}
				// Already on checksums: the command was garbled on the
				// line and not taken; resend it as it was.
				if tries++; tries <= p.retries() {
					continue
				}
				p.pending = s
				return Frame{}, p.errf("%w", nak)
			case NakSequence:
				// Resynchronise: sequence 0 and everything after it again.
				p.reset()
				if p.state == StateOnline {
					p.state = StateInit
					p.since = p.cfg.Now()
				}
			case NakSCCond, NakSCUnsupp:
				p.advance()
				p.sc = nil
				if p.cfg.Secure && p.state == StateOnline {
					p.state = StateInit
					p.since = p.cfg.Now()
				}
			default:
				p.advance()
			}
			return Frame{}, p.errf("%w", nak)
		}
		p.advance()
		return r, nil
	}
}

// retries is how often roundTrip resends a command that got no reply.
func (p *PD) retries() int {
	if p.oneShot {
		return 0
	}
	return p.cfg.Retries
}

func (p *PD) advance() {
	if p.seq == 0 || p.seq == 3 {
		p.seq = 1
	} else {
		p.seq++
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// transact does one write and read and checks the reply's address,
// sequence number and MAC. lost means no usable reply came back (a resend
// of the same bytes is in order).
func (p *PD) transact(ctx context.Context, s *sent) (f Frame, lost bool, err error) {
	raw, err := p.bus.Transact(ctx, s.raw, FrameLen)
	if err != nil {
		return Frame{}, true, p.errf("command %#02x: %w", s.code, err)
	}
	if f, err = Decode(raw); err != nil {
		drivers.Resync(p.bus)
		return Frame{}, true, p.errf("reply to %#02x: %w", s.code, err)
	}
	if !f.Reply || f.Addr != p.cfg.Addr {
		drivers.Resync(p.bus)
		return Frame{}, true, p.errf("reply to %#02x: address byte %#02x: want %#02x: %w", s.code, f.Addr, p.cfg.Addr|ReplyBit, ErrFrame)
	}
	if f.Code == ReplyBusy {
		if err := ParseBusy(f.Data); err != nil {
			return Frame{}, true, p.errf("%w", err)
		}
		return f, false, nil
	}
	if f.Seq != s.seq {
		drivers.Resync(p.bus)
		return Frame{}, true, p.errf("reply to %#02x: sequence %d: want %d: %w", s.code, f.Seq, s.seq, ErrFrame)
	}
	if p.sc != nil && f.SCBType >= SCS15 {
		data, err := p.sc.Open(raw, &f, false)
		if err != nil {
			p.sc = nil
			if p.state == StateOnline {
				p.state = StateInit
				p.since = p.cfg.Now()
			}
			p.advance()
			p.pending = nil
			return Frame{}, false, p.errf("reply to %#02x: %w", s.code, err)
		}
		f.Data = data
	} else if p.sc != nil && f.Code != ReplyNAK {
		p.sc = nil
		if p.state == StateOnline {
			p.state = StateInit
			p.since = p.cfg.Now()
		}
		p.advance()
		p.pending = nil
		return Frame{}, false, p.errf("reply %#02x to %#02x: plaintext under the secure channel: %w", f.Code, s.code, ErrSecure)
	} else {
		f.Data = append([]byte(nil), f.Data...)
	}
	return f, false, nil
}

// absorb turns a reply to POLL (or LSTAT/ISTAT) into events.
func (p *PD) absorb(r Frame) {
	switch r.Code {
	case ReplyRaw:
		c, err := ParseRaw(r.Data)
		if err != nil {
			p.log.Warn("osdp card read unreadable", "err", err)
			return
		}
		p.emit(Event{Kind: EventCard, Reader: c.Reader, Card: c})
	case ReplyFmt:
		c, err := ParseFmt(r.Data)
		if err != nil {
			p.log.Warn("osdp formatted card read unreadable", "err", err)
			return
		}
		p.emit(Event{Kind: EventCard, Reader: c.Reader, Card: Card{Reader: c.Reader, Format: 0xFF, Data: []byte(c.Text), Bits: 8 * len(c.Text)}})
	case ReplyKeypad:
		k, err := ParseKeypad(r.Data)
		if err != nil {
			p.log.Warn("osdp keypad reply unreadable", "err", err)
			return
		}
		p.emit(Event{Kind: EventKeypad, Reader: k.Reader, Keys: k.Keys})
	case ReplyLStatR:
		l, err := ParseLStatR(r.Data)
		if err != nil {
			p.log.Warn("osdp local status unreadable", "err", err)
			return
		}
		if (!p.haveLocal && l.Tamper) || (p.haveLocal && l.Tamper != p.local.Tamper) {
			p.emit(Event{Kind: EventTamper, Active: l.Tamper})
		}
		if (!p.haveLocal && l.Power) || (p.haveLocal && l.Power != p.local.Power) {
			p.emit(Event{Kind: EventPower, Active: l.Power})
		}
		p.local, p.haveLocal = l, true
	case ReplyIStatR:
		in, err := ParseStates("istatr", r.Data)
		if err != nil {
			p.log.Warn("osdp input status unreadable", "err", err)
			return
		}
		for i, v := range in {
			if (i < len(p.inputs) && p.inputs[i] != v) || (i >= len(p.inputs) && v != 0) {
				p.emit(Event{Kind: EventInput, Input: i, Active: v != 0})
			}
		}
		p.inputs = in
	case ReplyACK, ReplyOStatR, ReplyRStatR, ReplyCom:
	default:
		p.log.Debug("osdp reply ignored", "code", fmt.Sprintf("%#02x", r.Code))
	}
}

// command sends one command to an online reader and expects ACK (or the
// reply code want).
func (p *PD) command(ctx context.Context, code byte, data []byte, want byte) (Frame, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.restartIdle(); p.state == StateInit && p.announced {
		// An idle link, or one the reader dropped: bring it up again
		// rather than refuse a grant.
		if err := p.ensureOnline(ctx); err != nil {
			return Frame{}, err
		}
	}
	if p.state != StateOnline {
		return Frame{}, p.errf("command %#02x: %w (state %s)", code, ErrOffline, p.state)
	}
	r, err := p.exchange(ctx, code, data)
	if err != nil {
		return Frame{}, p.after(err)
	}
	if r.Code != want {
		p.absorb(r)
		return r, p.errf("command %#02x: reply %#02x: want %#02x: %w", code, r.Code, want, ErrPayload)
	}
	return r, nil
}

// Out sets outputs (a door strike: OutTempOn with a timer).
func (p *PD) Out(ctx context.Context, outs ...Output) error {
	if len(outs) == 0 {
		return p.errf("out: no outputs given")
	}
	_, err := p.command(ctx, CmdOut, OutData(outs...), ReplyACK)
	return err
}

// SetLED runs LED records.
func (p *PD) SetLED(ctx context.Context, leds ...LED) error {
	if len(leds) == 0 {
		return p.errf("led: no records given")
	}
	_, err := p.command(ctx, CmdLED, LEDData(leds...), ReplyACK)
	return err
}

// Buzz sounds the buzzer.
func (p *PD) Buzz(ctx context.Context, z Buzzer) error {
	_, err := p.command(ctx, CmdBuz, BuzData(z), ReplyACK)
	return err
}

// ShowText writes text on the reader's display.
func (p *PD) ShowText(ctx context.Context, t Text) error {
	d, err := TextData(t)
	if err != nil {
		return p.errf("text: %w", err)
	}
	_, err = p.command(ctx, CmdText, d, ReplyACK)
	return err
}

// ComSet changes the reader's address and baud rate. The reader answers
// with COM from its old address and then listens at the new one; the CP
// follows the address. The baud rate is the bus's: change it in the bus's
// config at the same time.
func (p *PD) ComSet(ctx context.Context, c ComSet) (ComSet, error) {
	if c.Addr > 126 {
		return ComSet{}, p.errf("comset: address %d: want 0..126", c.Addr)
	}
	r, err := p.command(ctx, CmdComSet, ComSetData(c), ReplyCom)
	if err != nil {
		return ComSet{}, err
	}
	got, err := ParseComSet(r.Data)
	if err != nil {
		return ComSet{}, p.errf("comset: %w", err)
	}
	p.mu.Lock()
	p.cfg.Addr = got.Addr
	p.state = StateInit
	p.since = p.cfg.Now()
	p.reset()
	p.mu.Unlock()
	return got, nil
}

// Grant signals an accepted credential: the strike output pulses for
// open, the LED shows green for as long and the buzzer beeps once.
func (p *PD) Grant(ctx context.Context, reader, output byte, open time.Duration) error {
	t := durTenths(open)
	if err := p.Out(ctx, Output{Number: output, Control: OutTempOn, Timer: t}); err != nil {
		return err
	}
	if err := p.SetLED(ctx, LED{Reader: reader, TempControl: 2, TempOn: 10, TempOff: 0, TempOnColor: ColorGreen,
		TempOffColor: ColorGreen, TempTimer: t}); err != nil {
		return err
	}
	return p.Buzz(ctx, Buzzer{Reader: reader, Tone: 2, On: 2, Off: 1, Count: 1})
}

// Deny signals a refused credential: the LED flashes red for two seconds
// and the buzzer beeps three times. The strike is not touched.
func (p *PD) Deny(ctx context.Context, reader byte) error {
	if err := p.SetLED(ctx, LED{Reader: reader, TempControl: 2, TempOn: 2, TempOff: 2, TempOnColor: ColorRed,
		TempOffColor: ColorBlack, TempTimer: 20}); err != nil {
		return err
	}
	return p.Buzz(ctx, Buzzer{Reader: reader, Tone: 2, On: 1, Off: 1, Count: 3})
}

func durTenths(d time.Duration) uint16 {
	t := (d + 50*time.Millisecond) / (100 * time.Millisecond)
	if t < 1 {
		t = 1
	}
	if t > 0xFFFF {
		t = 0xFFFF
	}
	return uint16(t)
}

// Run polls the reader every interval until ctx ends, handing its events to
// handle. Failed polls are logged at debug level; the offline rule and the
// back-off apply as with Poll. It returns ctx's error.
func (p *PD) Run(ctx context.Context, interval time.Duration, handle func(Event)) error {
	if interval <= 0 {
		return p.errf("run: poll interval %s: want more than zero", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Poll(ctx); err != nil && ctx.Err() == nil {
			p.log.Debug("osdp poll failed", "err", err)
		}
		for _, e := range p.TakeEvents() {
			handle(e)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
