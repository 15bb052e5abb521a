package citysim

import (
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/payload"
)

// held is a sealed message kept until the cloud confirms it.
type held struct {
	seq     uint64
	kind    payload.Kind
	records int
	body    []byte
}

// gateway is one simulated gateway. The scheduler goroutine seals and
// publishes; paho's goroutines of its connection deliver acknowledgements
// and connection events. mu guards everything below it.
type gateway struct {
	site, id string
	topics   [3]string // telemetry, events (by payload.Kind), status
	ackTopic string
	client   mqtt.Client
	occupied []bool // bay state, scheduler only
	events   uint64 // access credentials handed out, scheduler only
	// confirmWait: an acknowledgement that finds through stuck this long
	// below what was published marks the tail stalled.
	confirmWait time.Duration

	mu         sync.Mutex
	seq        uint64
	held       []held             // unconfirmed, ascending seq
	through    uint64             // highest through acknowledged
	published  uint64             // highest seq published at least once
	advancedAt time.Time          // when through last moved, or a stall was acted on
	resend     []payload.SeqRange // requested by the cloud, not yet published
	replay     bool               // a new connection: publish everything held
	stalled    bool               // publish the unconfirmed tail again
	online     bool
	acks       uint64
	badAcks    uint64
	resent     uint64 // messages published again (resend, replay, stall)
	stalls     uint64
}

func (g *gateway) topicFor(k payload.Kind) string {
	if k == payload.Event {
		return g.topics[1]
	}
	return g.topics[0]
}

// onAck handles one acknowledgement on paho's router goroutine: it deletes
// what the cloud confirmed and queues the resend ranges for the scheduler.
func (g *gateway) onAck(body []byte, now time.Time) {
	a, err := payload.DecodeAck(body)
	if err == nil && (a.Site != g.site || a.Gateway != g.id) {
		err = fmt.Errorf("ack for %s/%s on the topic of %s/%s", a.Site, a.Gateway, g.site, g.id)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.badAcks++
		return
	}
	g.acks++
	switch {
	case a.Through > g.through || g.advancedAt.IsZero():
		g.through = max(g.through, a.Through)
		g.advancedAt = now
	case len(a.Resend) == 0 && g.published > g.through && now.Sub(g.advancedAt) >= g.confirmWait:
		// Acknowledgements keep coming without moving past what was
		// published: the broker may have dropped the tail (as
		// gateway/uplink's ConfirmWait).
		g.stalled = true
		g.advancedAt = now
	}
	i := 0
	for i < len(g.held) && g.held[i].seq <= g.through {
		g.held[i] = held{}
		i++
	}
	g.held = g.held[i:]
	if len(g.held) == 0 {
		g.held = nil // let the emptied backing array go
	}
	g.resend = payload.MergeRanges(g.resend, a.Resend)
}

// due returns, oldest first, the held messages to publish again now:
// everything after a reconnect, the requested ranges, or the unconfirmed
// tail when acknowledgements stalled. The caller holds g.mu.
func (g *gateway) due(now time.Time) []held {
	if len(g.held) == 0 {
		g.resend, g.replay, g.stalled = nil, false, false
		return nil
	}
	switch {
	case g.replay || g.stalled:
		if g.stalled && !g.replay {
			g.stalls++
		}
		g.replay, g.stalled, g.resend = false, false, nil
		g.advancedAt = now
		g.published = max(g.published, g.held[len(g.held)-1].seq)
		return append([]held(nil), g.held...)
	case len(g.resend) > 0:
		var out []held
		for _, h := range g.held {
			for _, r := range g.resend {
				if h.seq >= r.First && h.seq <= r.Last {
					out = append(out, h)
					break
				}
			}
		}
		g.resend = nil
		return out
	}
	return nil
}
