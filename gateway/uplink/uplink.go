package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Source is the outbox as the uplink consumes it.
type Source interface {
	// Pending blocks until at least one unacknowledged message with Seq >
	// after exists (or ctx ends), and returns up to max such messages in Seq
	// order. after == 0 means from the oldest unacknowledged one.
	Pending(ctx context.Context, after uint64, max int) ([]payload.Message, error)
	// Ack records that the broker acknowledged these messages (PUBACK).
	Ack(seqs ...uint64) error
}

// ErrNotConnected is returned by PublishReply while no session is up.
var ErrNotConnected = errors.New("uplink: not connected to a broker")

// Uplink publishes a Source's messages to an MQTT broker. Create it with New
// and run it with Run; Stats, Connected and PublishReply may be called from
// any goroutine.
type Uplink struct {
	src  Source
	opts Options
	log  *slog.Logger

	running   atomic.Bool
	connected atomic.Bool
	handover  atomic.Bool // the next shutdown hands over: no offline status

	mu      sync.Mutex
	st      Stats
	maxSeq  uint64      // highest sequence number ever published, to count replays
	current mqtt.Client // the session's client once its birth is out, else nil

	dl delivery // end-to-end delivery state (delivery.go)
}

// New checks opts, fills in defaults and returns an Uplink reading from src.
// It makes no network calls.
func New(src Source, opts Options) (*Uplink, error) {
	if src == nil {
		return nil, errors.New("uplink: no source")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("uplink %s/%s: %w", opts.Site, opts.Gateway, err)
	}
	return &Uplink{src: src, opts: o, log: o.Logger}, nil
}

// Handover makes the shutdown at the end of Run a hand-over to another
// uplink of the same gateway with the same settings (a config reload): it
// disconnects cleanly without publishing the offline status. The clean
// DISCONNECT keeps the broker from publishing the will, so the status topic
// goes from this birth straight to the next one and the fleet view never
// sees the gateway offline.
func (u *Uplink) Handover() { u.handover.Store(true) }

// Connected reports whether a session is up (connected, birth published).
func (u *Uplink) Connected() bool { return u.connected.Load() }

// Run connects, publishes and reconnects until ctx ends. On the way out it
// waits up to CloseTimeout for in-flight PUBACKs, publishes the retained
// offline status and disconnects cleanly. It returns nil after a shutdown
// by ctx, and an error only when Run is already running.
func (u *Uplink) Run(ctx context.Context) error {
	if !u.running.CompareAndSwap(false, true) {
		return errors.New("uplink: Run called while already running")
	}
	defer u.running.Store(false)

	var cmds chan command
	var wg sync.WaitGroup
	if u.opts.OnCommand != nil {
		cmds = make(chan command, 64)
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.dispatch(ctx, cmds)
		}()
	}
	defer wg.Wait()

	attempt := 0     // consecutive failed connects, or connects that did not last
	var failed error // last connect error of the current failure streak
	for ctx.Err() == nil {
		s := u.newSession(ctx, cmds)
		err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			u.setErr(err)
			if failed == nil || failed.Error() != err.Error() {
				u.log.Warn("uplink connect failed; retrying with backoff", "err", err, "attempt", attempt+1)
			} else {
				u.log.Debug("uplink connect failed", "err", err, "attempt", attempt+1)
			}
			failed = err
		} else {
			failed = nil
			start := u.opts.Clock.Now()
			s.run(ctx)
			if u.opts.Clock.Since(start) >= u.opts.ReconnectMax {
				attempt = 0 // a session that lasted earns a quick reconnect
			}
		}
		if ctx.Err() != nil {
			break
		}
		if clock.Sleep(ctx, u.opts.Clock, backoff(attempt, u.opts.ReconnectMax)) != nil {
			break
		}
		attempt++
	}
	u.log.Info("uplink stopped")
	return nil
}

// backoff returns the delay before reconnect attempt n (0-based): an
// exponential step from 250 ms doubling up to max, of which the upper half
// is random so that a fleet does not reconnect in lockstep after a broker
// restart.
func backoff(n int, max time.Duration) time.Duration {
	d := 250 * time.Millisecond
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// command is one message received on the command topics.
type command struct {
	topic string
	body  []byte
}

// dispatch hands commands to OnCommand one at a time, in arrival order.
func (u *Uplink) dispatch(ctx context.Context, cmds <-chan command) {
	for {
		select {
		case c := <-cmds:
			u.opts.OnCommand(c.topic, c.body)
		case <-ctx.Done():
			return
		}
	}
}

// PublishReply publishes body at QoS 1 on gw/v1/{site}/{gateway}/cmd-reply/{id}
// over the current session and waits for its PUBACK (bounded by ctx and
// AckTimeout). Replies are not stored: without a session it returns
// ErrNotConnected and the caller decides whether to retry.
func (u *Uplink) PublishReply(ctx context.Context, id string, body []byte) error {
	if id == "" || strings.ContainsAny(id, "/+#") {
		return fmt.Errorf("uplink %s/%s: command reply id %q: want a non-empty id without '/', '+' or '#'", u.opts.Site, u.opts.Gateway, id)
	}
	u.mu.Lock()
	c := u.current
	u.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	topic := payload.Base(u.opts.Site, u.opts.Gateway) + "/" + payload.SuffixCmdReply + "/" + id
	tok := c.Publish(topic, 1, false, body)
	t := u.opts.Clock.NewTimer(u.opts.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return fmt.Errorf("uplink %s: reply %s: %w", topic, id, ctx.Err())
	case <-t.C():
		return fmt.Errorf("uplink %s: no PUBACK within %v", topic, u.opts.AckTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("uplink %s: %w", topic, err)
	}
	return nil
}

// session is one MQTT connection and the streaming over it.
type session struct {
	u      *Uplink
	client mqtt.Client
	// ctx ends when the connection is lost or dropped, or Run's ctx ends;
	// cancel records why.
	ctx    context.Context
	cancel context.CancelCauseFunc
	lost   atomic.Bool // Paho reported the connection lost
	rewind atomic.Bool // an Ack failed: read from the oldest unacknowledged again
	broker atomic.Pointer[string]
	cmds   chan<- command
	id     uint64 // Stats.Connects at this session's start, for logs
}

func (u *Uplink) newSession(ctx context.Context, cmds chan<- command) *session {
	s := &session{u: u, cmds: cmds}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	o := &u.opts

	statusTopic := payload.StatusTopic(o.Site, o.Gateway)
	will := payload.EncodeStatus(&payload.Status{Site: o.Site, Gateway: o.Gateway, Online: false, Time: o.Clock.Now().UTC()})

	co := mqtt.NewClientOptions()
	for _, b := range o.Brokers {
		co.AddBroker(b)
	}
	co.SetClientID(o.ClientID)
	co.SetUsername(o.Username)
	co.SetPassword(o.Password)
	if o.TLS != nil {
		co.SetTLSConfig(o.TLS)
	}
	co.SetProtocolVersion(4)
	co.SetCleanSession(true)
	co.SetAutoReconnect(false)
	co.SetConnectRetry(false)
	co.SetResumeSubs(false)
	co.SetOrderMatters(true)
	co.SetKeepAlive(o.KeepAlive)
	co.SetPingTimeout(min(o.KeepAlive, 10*time.Second))
	co.SetDialer(&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: o.KeepAlive, Control: userTimeoutControl(o.AckTimeout)})
	co.SetConnectTimeout(o.ConnectTimeout)
	co.SetWriteTimeout(o.ConnectTimeout)
	co.SetBinaryWill(statusTopic, will, 1, true)
	co.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		if b, ok := n.(mqtt.ConnectionNotificationBroker); ok && b.Broker != nil {
			url := b.Broker.Redacted()
			s.broker.Store(&url)
		}
	})
	co.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		s.lost.Store(true)
		s.cancel(fmt.Errorf("connection lost: %w", err))
	})
	s.client = mqtt.NewClient(co)
	return s
}

func (s *session) brokerURL() string {
	if p := s.broker.Load(); p != nil {
		return *p
	}
	return strings.Join(s.u.opts.Brokers, ",")
}

// connect dials the brokers in order and completes CONNECT/CONNACK.
func (s *session) connect(ctx context.Context) error {
	o := &s.u.opts
	tok := s.client.Connect()
	// Paho bounds each broker's attempt by ConnectTimeout; this timer only
	// guards against that bound failing, on the same real clock.
	t := time.NewTimer(time.Duration(len(o.Brokers)+1) * 2 * o.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.client.Disconnect(0)
		return ctx.Err()
	case <-t.C:
		s.client.Disconnect(0)
		return fmt.Errorf("uplink %s: connect: no answer within %v", s.brokerURL(), time.Duration(len(o.Brokers)+1)*2*o.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("uplink %s: connect: %w", strings.Join(redactAll(o.Brokers), ","), err)
	}
	return nil
}

func redactAll(bs []string) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = redact(b)
	}
	return out
}

// run does the session's work until the connection ends or ctx ends.
func (s *session) run(ctx context.Context) {
	u := s.u
	broker := s.brokerURL()
	u.mu.Lock()
	u.st.Connects++
	u.st.Broker = broker
	s.id = u.st.Connects
	u.mu.Unlock()
	log := u.log.With("broker", broker, "session", s.id)

	err := s.start()
	if err == nil {
		u.mu.Lock()
		u.current = s.client
		u.st.Connected = true
		u.st.LastConnect = u.opts.Clock.Now()
		u.mu.Unlock()
		u.connected.Store(true)
		log.Info("uplink connected")
		s.stream()
		u.connected.Store(false)
		u.mu.Lock()
		u.current = nil
		u.st.Connected = false
		u.mu.Unlock()
	}

	if ctx.Err() != nil && !s.lost.Load() {
		s.shutdown(log)
		return
	}
	if err == nil {
		err = context.Cause(s.ctx)
	}
	s.client.Disconnect(0)
	u.setErr(fmt.Errorf("uplink %s: %w", broker, err))
	u.mu.Lock()
	u.st.ConnectionLosses++
	u.mu.Unlock()
	log.Warn("uplink connection ended; will reconnect and replay unacknowledged messages", "err", err)
}

// start subscribes to commands and publishes the birth message.
func (s *session) start() error {
	u := s.u
	o := &u.opts
	if o.OnCommand != nil {
		filter := payload.Base(o.Site, o.Gateway) + "/" + payload.SuffixCmd + "/#"
		ctx := s.ctx
		cmds := s.cmds
		tok := s.client.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			c := command{topic: m.Topic(), body: append([]byte(nil), m.Payload()...)}
			select {
			case cmds <- c:
			case <-ctx.Done():
			}
		})
		if err := s.wait(tok, o.AckTimeout); err != nil {
			return fmt.Errorf("subscribe %s: %w", filter, err)
		}
	}
	if err := s.startDelivery(); err != nil {
		return err
	}
	var st payload.Status
	if o.Birth != nil {
		if b := o.Birth(); b != nil {
			st = *b
		}
	}
	st.Site, st.Gateway, st.Online = o.Site, o.Gateway, true
	if st.Time.IsZero() {
		st.Time = o.Clock.Now().UTC()
	}
	topic := payload.StatusTopic(o.Site, o.Gateway)
	if err := s.wait(s.client.Publish(topic, 1, true, payload.EncodeStatus(&st)), o.AckTimeout); err != nil {
		return fmt.Errorf("birth on %s: %w", topic, err)
	}
	return nil
}

// wait waits for a token, the end of the session, or d.
func (s *session) wait(tok mqtt.Token, d time.Duration) error {
	t := s.u.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	case <-t.C():
		return fmt.Errorf("no acknowledgement within %v", d)
	}
}

// flight is one publish waiting for its PUBACK.
type flight struct {
	seq uint64
	tok mqtt.Token
	at  time.Time
}

// stream publishes Pending messages, keeping at most Window in flight,
// until the session ends; it returns when every publish of the session is
// settled or abandoned.
func (s *session) stream() {
	u := s.u
	o := &u.opts
	slots := make(chan struct{}, o.Window)
	flights := make(chan flight, o.Window)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.collect(flights, slots)
	}()

	topics := map[payload.Kind]string{
		payload.Telemetry: payload.TopicFor(o.Site, o.Gateway, payload.Telemetry),
		payload.Event:     payload.TopicFor(o.Site, o.Gateway, payload.Event),
	}
	var after uint64 // 0: a session starts from the oldest unacknowledged message
	errDelay := 100 * time.Millisecond
loop:
	for {
		select {
		case slots <- struct{}{}:
		case <-s.ctx.Done():
			break loop
		}
		n := 1
	fill:
		for n < o.Window {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		if s.rewind.Swap(false) {
			after = 0
		}
		msgs, err := s.read(after, n)
		if len(msgs) > n {
			msgs = msgs[:n] // a Source that ignores max must not overrun the window
		}
		for range n - len(msgs) {
			<-slots
		}
		if err != nil {
			if s.ctx.Err() != nil {
				break loop
			}
			u.setErr(fmt.Errorf("uplink: outbox pending after seq %d: %w", after, err))
			u.log.Warn("uplink: outbox read failed", "after", after, "err", err)
			if clock.Sleep(s.ctx, o.Clock, errDelay) != nil {
				break loop
			}
			errDelay = min(2*errDelay, 5*time.Second)
			continue
		}
		errDelay = 100 * time.Millisecond
		if len(msgs) == 0 {
			// Pending should block instead; do not spin on a Source that
			// returns empty handed (real time: a guard against a busy
			// loop, not a schedule).
			select {
			case <-time.After(10 * time.Millisecond):
			case <-s.ctx.Done():
				break loop
			}
			continue
		}
		for _, m := range msgs {
			topic, ok := topics[m.Kind]
			if !ok {
				topic = payload.TopicFor(o.Site, o.Gateway, m.Kind)
			}
			tok := s.client.Publish(topic, 1, false, m.Body)
			flights <- flight{seq: m.Seq, tok: tok, at: o.Clock.Now()}
			after = max(after, m.Seq) // a resent message does not move after back
			u.mu.Lock()
			u.st.Published++
			u.st.InFlight++
			if m.Seq <= u.maxSeq {
				u.st.Replays++
			} else {
				u.maxSeq = m.Seq
			}
			u.mu.Unlock()
		}
	}
	close(flights)
	<-done
}

// collect waits for the PUBACKs of flights in publish order and acknowledges
// completed runs of them with one Ack each. It returns when flights is
// closed and drained, or when the session ended and CloseTimeout passed
// without the head settling (the rest is then abandoned: not acknowledged,
// replayed by the next session).
func (s *session) collect(flights <-chan flight, slots <-chan struct{}) {
	u := s.u
	var (
		queue  []flight
		seqs   []uint64
		closed bool
		drain  *time.Timer // runs once the session ended
	)
	defer func() {
		if drain != nil {
			drain.Stop()
		}
	}()
	release := func(n int) {
		for range n {
			<-slots
		}
		u.mu.Lock()
		u.st.InFlight -= n
		u.mu.Unlock()
	}
	for {
		if len(queue) == 0 {
			f, ok := <-flights
			if !ok {
				return
			}
			queue = append(queue, f)
		}
	more:
		for !closed {
			select {
			case f, ok := <-flights:
				if !ok {
					closed = true
					break more
				}
				queue = append(queue, f)
			default:
				break more
			}
		}

		if !s.await(queue[0], &drain) {
			release(len(queue))
			for range flights {
				release(1)
			}
			return
		}

		// Settle the head and every completed publish right behind it.
		seqs = seqs[:0]
		i := 0
		for i < len(queue) && (i == 0 || isDone(queue[i].tok)) {
			if queue[i].tok.Error() == nil {
				seqs = append(seqs, queue[i].seq)
			}
			i++
		}
		queue = append(queue[:0], queue[i:]...)
		release(i)
		if len(seqs) == 0 {
			continue
		}
		u.mu.Lock()
		u.st.LastPuback = u.opts.Clock.Now()
		u.mu.Unlock()
		if err := u.settle(seqs); err != nil {
			u.setErr(fmt.Errorf("uplink: outbox ack of %d messages (seq %d..%d): %w", len(seqs), seqs[0], seqs[len(seqs)-1], err))
			u.log.Warn("uplink: outbox ack failed; the messages will be published again", "first", seqs[0], "last", seqs[len(seqs)-1], "err", err)
			s.rewind.Store(true)
			continue
		}
		u.mu.Lock()
		u.st.Acked += uint64(len(seqs))
		u.mu.Unlock()
	}
}

// await waits until f's token completes (PUBACK or error) and reports
// whether it did. While the session lives the wait is bounded by AckTimeout,
// after which the connection is dropped; once the session ended, *drain
// bounds what is left of every wait to CloseTimeout.
func (s *session) await(f flight, drain **time.Timer) bool {
	o := &s.u.opts
	if isDone(f.tok) {
		return true
	}
	if *drain == nil {
		t := o.Clock.NewTimer(o.Clock.Until(f.at.Add(o.AckTimeout)))
		select {
		case <-f.tok.Done():
			t.Stop()
			return true
		case <-t.C():
			s.u.log.Warn("uplink dropping a connection that stopped acknowledging", "seq", f.seq, "timeout", o.AckTimeout)
			s.cancel(fmt.Errorf("no PUBACK for seq %d within %v", f.seq, o.AckTimeout))
			s.client.Disconnect(0)
		case <-s.ctx.Done():
			t.Stop()
		}
		*drain = time.NewTimer(o.CloseTimeout) // real time: keeps a shutdown short
	}
	select {
	case <-f.tok.Done():
		return true
	case <-(*drain).C:
		return false
	}
}

func isDone(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

// shutdown ends a healthy session because Run's ctx ended: it lets the
// in-flight publishes settle (stream did, within CloseTimeout), publishes the
// retained offline status and disconnects.
func (s *session) shutdown(log *slog.Logger) {
	u := s.u
	o := &u.opts
	if u.handover.Load() {
		s.client.Disconnect(250)
		log.Info("uplink disconnected for a hand-over (config reload); no offline status")
		return
	}
	st := payload.Status{Site: o.Site, Gateway: o.Gateway, Online: false, Time: o.Clock.Now().UTC()}
	topic := payload.StatusTopic(o.Site, o.Gateway)
	tok := s.client.Publish(topic, 1, true, payload.EncodeStatus(&st))
	if !tok.WaitTimeout(o.CloseTimeout) {
		log.Warn("uplink offline status not acknowledged before shutdown", "timeout", o.CloseTimeout)
	} else if err := tok.Error(); err != nil {
		log.Warn("uplink offline status failed", "err", err)
	}
	s.client.Disconnect(250)
	log.Info("uplink disconnected")
}

func (u *Uplink) setErr(err error) {
	u.mu.Lock()
	u.st.LastError = err.Error()
	u.st.LastErrorAt = u.opts.Clock.Now()
	u.mu.Unlock()
}
