package ingest

import (
	"fmt"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// declare applies a gateway's dropped announcement to its sequence check.
// It runs on the writer goroutine, in queue order with the batches.
func (in *Ingest) declare(d *payload.Dropped) {
	if ignored := in.fleet.Declare(d); ignored > 0 {
		in.reject(&Rejection{Reason: fleet.ReasonSeqJump, Site: d.Site, Gateway: d.Gateway,
			Err: fmt.Errorf("dropped announcement of %s/%s: %d ranges ignored: more than the bound (-seq-max-jump) ahead of the expected number", d.Site, d.Gateway, ignored)})
	}
	var n uint64
	for _, l := range d.Losses {
		n += l.Len()
	}
	if ok, sup := in.limit.allow("declared"); ok {
		in.log.Warn("gateway declared sequence numbers it will never send", "site", d.Site, "gateway", d.Gateway,
			"ranges", len(d.Losses), "numbers", n, "first", d.Losses[0].First, "reason", d.Losses[0].Reason, "suppressed_since_last", sup)
	}
}

// publishAcks publishes the acknowledgements the fleet says are due, at
// QoS 1, without waiting for their PUBACKs: an ack is cumulative, and a
// lost one is made good by the next. It runs on the writer goroutine
// between flushes, so every number admitted so far is written.
func (in *Ingest) publishAcks() {
	if in.Health() != nil {
		return
	}
	for _, a := range in.fleet.Acks(fleet.AckPolicy{Every: in.cfg.AckEvery, ResendAfter: in.cfg.ResendAfter, Repeat: in.cfg.AckRepeat}) {
		if src := in.cfg.Source; src != nil {
			src.Publish(payload.AckTopic(a.Site, a.Gateway), payload.EncodeAck(&a))
		} else {
			in.client.Publish(payload.AckTopic(a.Site, a.Gateway), 1, false, payload.EncodeAck(&a))
		}
		in.acks.Add(1)
		if len(a.Resend) > 0 {
			if ok, sup := in.limit.allow("resend"); ok {
				in.log.Info("asking a gateway to send a gap again", "site", a.Site, "gateway", a.Gateway,
					"through", a.Through, "first", a.Resend[0].First, "last", a.Resend[0].Last, "ranges", len(a.Resend), "suppressed_since_last", sup)
			}
		}
	}
}
