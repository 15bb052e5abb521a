package ingest

import (
	"context"
	"sync"
	"time"
)

// Message is one message from the broker or the engine: an MQTT topic of
// contract v1, its payload, and the acknowledgement that tells the sender
// it may forget it. paho's mqtt.Message is one.
type Message interface {
	Topic() string
	Payload() []byte
	Ack()
}

// Source is where messages come from when cloudd does not read them from
// an MQTT broker itself: a scale-out engine such as NATS JetStream
// (cloud/natsbus). It also carries the acknowledgements to gateways.
type Source interface {
	// Run connects and calls deliver for every message until ctx ends. It
	// may call deliver from several goroutines, but the messages of one
	// gateway from one only, in their order. deliver blocks while the
	// writer's queue is full (backpressure) and returns at once when ctx
	// ended.
	Run(ctx context.Context, deliver func(Message)) error
	// Publish sends a gateway its acknowledgement (topic …/ack) without
	// waiting: an ack is cumulative, a lost one is made good by the next.
	Publish(topic string, body []byte)
	// Connected reports whether messages can flow.
	Connected() bool
	// String names the source in logs and health errors.
	String() string
}

// Committer is implemented by a Source that must record the sequence state
// of the gateways whose messages were just written before those messages
// are acknowledged (so that another instance taking a gateway over starts
// from state no older than what was acknowledged). Commit gets the keys
// ("site/gateway") of the gateways in one flush, in no particular order.
// When it fails the messages are not acknowledged; the source delivers
// them again.
type Committer interface {
	Commit(ctx context.Context, gateways []string) error
}

// commit hands the flushed gateways to the source's Committer, if any. It
// reports whether the messages may be acknowledged.
func (in *Ingest) commit(ctx context.Context, pending []item) bool {
	c, ok := in.cfg.Source.(Committer)
	if !ok {
		return true
	}
	seen := make(map[string]bool)
	var keys []string
	for i := range pending {
		var k string
		switch it := &pending[i]; {
		case it.batch != nil:
			k = it.batch.Site + "/" + it.batch.Gateway
		case it.dropped != nil:
			k = it.dropped.Site + "/" + it.dropped.Gateway
		default:
			continue
		}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return true
	}
	if err := c.Commit(ctx, keys); err != nil {
		if ok, sup := in.limit.allow("commit"); ok {
			in.log.Warn("cannot record the sequence state; messages stay unacknowledged and come again", "source", in.cfg.Source.String(), "gateways", len(keys), "err", err, "suppressed_since_last", sup)
		}
		return false
	}
	return true
}

// runSource is Run with a Source instead of the MQTT client.
func (in *Ingest) runSource(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.runCtx = ctx
	var wg sync.WaitGroup
	in.startWriter(ctx, &wg)
	src := in.cfg.Source
	in.log.Info("ingesting from source", "source", src.String())
	start := time.Now()
	err := src.Run(ctx, in.deliver)
	cancel()
	wg.Wait()
	if err != nil {
		in.log.Error("source stopped", "source", src.String(), "after", time.Since(start).Round(time.Second), "err", err)
	}
	return err
}
