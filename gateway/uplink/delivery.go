package uplink

import (
	"context"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/payload"
)

// Delivery is implemented by a Source that keeps messages until the cloud
// confirms them (the outbox). With such a Source the uplink takes part in
// end-to-end delivery (MQTT contract v1, …/ack and …/dropped):
//
//   - a PUBACK only marks messages Sent; they stay in the Source;
//   - each session subscribes to gw/v1/{site}/{gateway}/ack (QoS 1); an
//     acknowledgement's through goes to Confirm, which lets the Source
//     delete what the cloud wrote, and its resend ranges are published
//     again, before new messages, from what the Source still holds;
//   - when acknowledgements keep arriving without moving past messages the
//     broker acknowledged (the broker dropped the tail of a burst after its
//     PUBACK: the cloud sees no gap, so it asks for nothing) for
//     ConfirmWait, those messages are published again;
//   - the Source's declared losses are announced on …/dropped at the start
//     of each session and again (at most every announceEvery) when an
//     acknowledgement arrives while some are not yet confirmed.
//
// A Source without these methods is acknowledged on PUBACK (Ack), as
// before.
type Delivery interface {
	Sent(seqs ...uint64) error
	Confirm(through uint64) error
	Losses() []payload.Loss
}

// announceEvery is the shortest time between two dropped announcements.
const announceEvery = 5 * time.Second

// maxResendQueued bounds the resend ranges waiting; more are merged.
const maxResendQueued = 256

// delivery is the uplink's end-to-end delivery state, shared by the
// sessions. Its mutex is not held while calling the Source.
type delivery struct {
	mu        sync.Mutex
	resend    []payload.SeqRange // requested ranges not yet published, ascending
	wake      context.CancelFunc // cancels a Pending blocked in read, if any
	announced time.Time          // last dropped announcement
	acks      uint64             // acknowledgements received
	resent    uint64             // messages published again on request
	announces uint64             // dropped announcements published
	bad       uint64             // acknowledgements ignored as malformed

	pubacked   uint64    // highest seq the broker acknowledged
	through    uint64    // highest through the cloud acknowledged
	advancedAt time.Time // when through last moved (or a stall was acted on)
	stalls     uint64    // tails published again after ConfirmWait
}

// DeliveryStats are the counters of end-to-end delivery.
type DeliveryStats struct {
	Acks      uint64 // acknowledgements received from the cloud
	Resent    uint64 // messages published again on the cloud's request
	Announces uint64 // dropped announcements published
	BadAcks   uint64 // acknowledgements ignored as malformed or for another gateway
	Stalls    uint64 // times the unconfirmed tail was published again (ConfirmWait)
}

// DeliveryStats returns the end-to-end delivery counters.
func (u *Uplink) DeliveryStats() DeliveryStats {
	d := &u.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	return DeliveryStats{Acks: d.acks, Resent: d.resent, Announces: d.announces, BadAcks: d.bad, Stalls: d.stalls}
}

// settle hands PUBACKed messages to the Source: Sent when it takes part in
// end-to-end delivery, else Ack.
func (u *Uplink) settle(seqs []uint64) error {
	if dv, ok := u.src.(Delivery); ok {
		d := &u.dl
		d.mu.Lock()
		d.pubacked = max(d.pubacked, seqs[len(seqs)-1])
		d.mu.Unlock()
		return dv.Sent(seqs...)
	}
	return u.src.Ack(seqs...)
}

// startDelivery subscribes to the ack topic and announces pending losses.
// It does nothing for a Source without Delivery.
func (s *session) startDelivery() error {
	u := s.u
	dv, ok := u.src.(Delivery)
	if !ok {
		return nil
	}
	o := &u.opts
	topic := payload.AckTopic(o.Site, o.Gateway)
	client := s.client
	tok := s.client.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		u.onAck(dv, client, m.Payload())
	})
	if err := s.wait(tok, o.AckTimeout); err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	u.announce(dv, client, true)
	return nil
}

// onAck handles one acknowledgement. It runs on Paho's router goroutine
// and must not wait for the network.
func (u *Uplink) onAck(dv Delivery, client mqtt.Client, body []byte) {
	o := &u.opts
	d := &u.dl
	a, err := payload.DecodeAck(body)
	if err == nil && (a.Site != o.Site || a.Gateway != o.Gateway) {
		err = fmt.Errorf("ack for %s/%s on our topic", a.Site, a.Gateway)
	}
	if err != nil {
		d.mu.Lock()
		d.bad++
		d.mu.Unlock()
		u.log.Warn("uplink: ignoring a malformed acknowledgement", "err", err)
		return
	}
	if err := dv.Confirm(a.Through); err != nil {
		u.log.Warn("uplink: outbox confirm failed", "through", a.Through, "err", err)
	}
	now := u.opts.Clock.Now()
	d.mu.Lock()
	d.acks++
	resend := a.Resend
	var stalled *payload.SeqRange
	switch {
	case a.Through > d.through || d.advancedAt.IsZero():
		d.through, d.advancedAt = max(d.through, a.Through), now
	case len(resend) == 0 && d.pubacked > a.Through && now.Sub(d.advancedAt) >= o.ConfirmWait:
		stalled = &payload.SeqRange{First: a.Through + 1, Last: d.pubacked}
		resend = []payload.SeqRange{*stalled}
		d.advancedAt = now
		d.stalls++
	}
	if len(resend) > 0 {
		d.resend = mergeRanges(d.resend, resend)
		if d.wake != nil {
			d.wake()
		}
	}
	d.mu.Unlock()
	if stalled != nil {
		u.log.Warn("uplink: the cloud has not confirmed messages the broker acknowledged; publishing them again",
			"first", stalled.First, "last", stalled.Last, "confirm_wait", o.ConfirmWait)
	}
	if len(a.Resend) > 0 {
		u.log.Info("uplink: the cloud asks to send a gap again", "first", a.Resend[0].First, "last", a.Resend[len(a.Resend)-1].Last, "ranges", len(a.Resend))
	}
	u.announce(dv, client, false)
}

// announce publishes the Source's declared losses, if any: always when
// force is set (session start), else at most every announceEvery. It does
// not wait for the PUBACK; the next acknowledgement triggers it again until
// the cloud confirmed the losses.
func (u *Uplink) announce(dv Delivery, client mqtt.Client, force bool) {
	d := &u.dl
	now := u.opts.Clock.Now()
	d.mu.Lock()
	if !force && now.Sub(d.announced) < announceEvery {
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	losses := dv.Losses()
	if len(losses) == 0 {
		return
	}
	if len(losses) > payload.MaxLosses {
		losses = losses[:payload.MaxLosses]
	}
	o := &u.opts
	body := payload.EncodeDropped(&payload.Dropped{Site: o.Site, Gateway: o.Gateway, Losses: losses, Sent: now.UTC()})
	client.Publish(payload.DroppedTopic(o.Site, o.Gateway), 1, false, body)
	d.mu.Lock()
	d.announced = now
	d.announces++
	d.mu.Unlock()
	u.log.Info("uplink: announced sequence numbers the outbox will never send", "ranges", len(losses),
		"first", losses[0].First, "last", losses[len(losses)-1].Last)
}

// read returns the next messages to publish, at most n: those of a
// requested resend range first (from what the Source still holds; without
// waiting), else the Source's messages after after, waiting until there are
// some, a resend is requested, or the session ends.
func (s *session) read(after uint64, n int) ([]payload.Message, error) {
	u := s.u
	d := &u.dl
	for {
		d.mu.Lock()
		if len(d.resend) > 0 {
			r := d.resend[0]
			d.mu.Unlock()
			msgs, err := s.readRange(r, n)
			if err != nil || len(msgs) > 0 {
				return msgs, err
			}
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		d.wake = cancel
		d.mu.Unlock()
		msgs, err := u.src.Pending(ctx, after, n)
		d.mu.Lock()
		d.wake = nil
		d.mu.Unlock()
		cancel()
		if err != nil && s.ctx.Err() == nil && ctx.Err() != nil {
			continue // woken for a resend
		}
		return msgs, err
	}
}

// readRange reads up to n held messages of r and removes what it returns
// (or what the Source no longer holds) from the resend queue.
func (s *session) readRange(r payload.SeqRange, n int) ([]payload.Message, error) {
	u := s.u
	d := &u.dl
	done, cancel := context.WithCancel(s.ctx)
	cancel() // do not wait: what the Source holds of r is there now
	msgs, err := u.src.Pending(done, r.First-1, n)
	if err != nil && s.ctx.Err() != nil {
		return nil, err
	}
	i := 0
	for i < len(msgs) && msgs[i].Seq <= r.Last {
		i++
	}
	msgs = msgs[:i]
	next := r.Last + 1 // the whole range is served
	if len(msgs) == n && msgs[n-1].Seq < r.Last {
		next = msgs[n-1].Seq + 1 // the window is full: the rest later
	}
	d.mu.Lock()
	if len(d.resend) > 0 && d.resend[0] == r {
		if next > r.Last {
			d.resend = d.resend[1:]
		} else {
			d.resend[0].First = next
		}
	}
	d.resent += uint64(len(msgs))
	d.mu.Unlock()
	return msgs, nil
}

// mergeRanges adds rs to the ascending, disjoint list q, merging overlaps
// (payload.MergeRanges); past maxResendQueued ranges the last two merge.
func mergeRanges(q, rs []payload.SeqRange) []payload.SeqRange {
	out := payload.MergeRanges(q, rs)
	for len(out) > maxResendQueued {
		out[len(out)-2].Last = out[len(out)-1].Last
		out = out[:len(out)-1]
	}
	return out
}
