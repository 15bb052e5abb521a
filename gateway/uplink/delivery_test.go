package uplink

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

var _ Delivery = (*outbox.Outbox)(nil)

func openOutbox(t *testing.T, maxBytes int64) *outbox.Outbox {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Site: site, Gateway: gw, MaxBytes: maxBytes,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func appendReadings(t *testing.T, ob *outbox.Outbox, n int) {
	t.Helper()
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		rec := payload.Record{Measurement: "pv", Tags: map[string]string{"device": "inv-1"},
			Fields: map[string]payload.Value{"ac_power_w": payload.Float(float64(i) + 0.5)}, Time: t0.Add(time.Duration(i) * time.Second)}
		if err := ob.Append(context.Background(), payload.Telemetry, []payload.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
}

func publishAck(t *testing.T, c mqtt.Client, body []byte) {
	t.Helper()
	if tok := c.Publish(payload.AckTopic(site, gw), 1, false, body); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish ack: %v", tok.Error())
	}
}

// With the outbox as Source, a PUBACK does not delete; the cloud's ack
// does; resend ranges are published again; malformed or foreign acks are
// ignored and counted.
func TestDeliveryConfirmAndResend(t *testing.T) {
	broker := testenv.Mosquitto(t)
	ob := openOutbox(t, 0)
	appendReadings(t, ob, 5)
	cloud := subscribe(t, broker.URL(), "", payload.Base(site, gw)+"/telemetry")
	u := newUplink(t, ob, baseOptions(t, broker.URL()))
	start(t, u)
	waitFor(t, 20*time.Second, "5 messages PUBACKed", func() bool { return ob.Stats().SentThrough == 5 })
	if n := ob.Stats().Unacked.Messages; n != 5 {
		t.Fatalf("outbox holds %d messages after their PUBACKs, want 5 (kept until confirmed)", n)
	}
	waitFor(t, 10*time.Second, "5 messages at the cloud", func() bool { return len(cloud.seqs(t)) == 5 })

	ackC := subscribe(t, broker.URL(), "", "probe/none").c
	now := time.Now().UTC()
	publishAck(t, ackC, payload.EncodeAck(&payload.Ack{Site: site, Gateway: gw, Through: 1, Resend: []payload.SeqRange{{First: 3, Last: 4}}, Sent: now}))
	waitFor(t, 10*time.Second, "3 and 4 published again", func() bool {
		s := cloud.seqs(t)
		return s[3] == 2 && s[4] == 2
	})
	if s := cloud.seqs(t); s[2] != 1 || s[5] != 1 {
		t.Fatalf("published %v: only 3 and 4 were asked for again", s)
	}
	if n := ob.Stats().Unacked.Messages; n != 4 {
		t.Fatalf("after through 1: %d held, want 4", n)
	}
	publishAck(t, ackC, []byte(`{"v":1,"site":"`+site+`","gateway":"other","through":5,"sent":"2026-03-01T08:00:00Z"}`))
	publishAck(t, ackC, []byte(`{"v":1,"through":"5"}`))
	waitFor(t, 10*time.Second, "two bad acks counted", func() bool { return u.DeliveryStats().BadAcks == 2 })
	if n := ob.Stats().Unacked.Messages; n != 4 {
		t.Fatalf("a bad ack confirmed messages: %d held, want 4", n)
	}
	publishAck(t, ackC, payload.EncodeAck(&payload.Ack{Site: site, Gateway: gw, Through: 5, Sent: now}))
	waitFor(t, 10*time.Second, "everything confirmed", func() bool { return ob.Stats().Unacked.Messages == 0 })
	if ds := u.DeliveryStats(); ds.Resent != 2 || ds.Acks != 2 {
		t.Fatalf("delivery stats %+v, want 2 resent, 2 acks", ds)
	}
}

// Declared losses are announced at connect and, while unconfirmed, again
// when an ack arrives; an ack covering them makes the outbox forget them.
func TestDeliveryAnnouncesLosses(t *testing.T) {
	broker := testenv.Mosquitto(t)
	ob := openOutbox(t, 64<<10) // 16 segments of 4 KiB: appends below drop the oldest
	appendReadings(t, ob, 300)
	losses := ob.Losses()
	if len(losses) == 0 {
		t.Fatal("the outbox dropped nothing; the test needs a declared loss")
	}
	cloud := subscribe(t, broker.URL(), "", payload.DroppedTopic(site, gw))
	u := newUplink(t, ob, baseOptions(t, broker.URL()))
	start(t, u)
	var got *payload.Dropped
	waitFor(t, 20*time.Second, "the announcement", func() bool {
		for _, r := range cloud.all() {
			d, err := payload.DecodeDropped(r.body)
			if err != nil {
				t.Fatalf("announcement does not decode: %v", err)
			}
			got = d
		}
		return got != nil
	})
	if !reflect.DeepEqual(got.Losses, losses) || got.Site != site || got.Gateway != gw {
		t.Fatalf("announced %+v, want the outbox's losses %v", got, losses)
	}
	last := losses[len(losses)-1].Last
	ackC := subscribe(t, broker.URL(), "", "probe/none").c
	publishAck(t, ackC, payload.EncodeAck(&payload.Ack{Site: site, Gateway: gw, Through: last, Sent: time.Now().UTC()}))
	waitFor(t, 10*time.Second, "losses forgotten after the cloud confirmed them", func() bool { return len(ob.Losses()) == 0 })
	if !slices.IsSortedFunc(losses, func(a, b payload.Loss) int { return int(a.First) - int(b.First) }) {
		t.Fatalf("losses not ascending: %v", losses)
	}
}

func TestMergeRanges(t *testing.T) {
	r := func(a, b uint64) payload.SeqRange { return payload.SeqRange{First: a, Last: b} }
	got := mergeRanges([]payload.SeqRange{r(5, 9), r(20, 30)}, []payload.SeqRange{r(1, 2), r(8, 12), r(13, 14), r(40, 40)})
	want := []payload.SeqRange{r(1, 2), r(5, 14), r(20, 30), r(40, 40)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
}
