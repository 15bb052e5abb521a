package ingest_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// acks collects what cloudd publishes on one gateway's ack topic.
type acks struct {
	mu  sync.Mutex
	got []*payload.Ack
}

func (a *acks) last() *payload.Ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		return nil
	}
	return a.got[len(a.got)-1]
}

// A gap is asked for again; a declared range is counted as declared, not
// lost; the ack's through moves past both; a dropped announcement for
// another gateway is rejected.
func TestAcksResendRequestsAndDeclaredLosses(t *testing.T) {
	broker := testenv.Mosquitto(t)
	influx, db := testenv.NewDatabase(t)
	r := startIngest(t, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-acks", Group: "cloudd", Grace: time.Hour,
		AckEvery: 50 * time.Millisecond, ResendAfter: 200 * time.Millisecond}, influx.URL, db, nil)
	g := connectGateway(t, broker.URL(), "harbor", "gw-1", "", "")
	got := &acks{}
	tok := g.c.Subscribe(payload.AckTopic("harbor", "gw-1"), 1, func(_ mqtt.Client, m mqtt.Message) {
		a, err := payload.DecodeAck(m.Payload())
		if err != nil {
			t.Errorf("cloudd's ack does not decode: %v: %s", err, m.Payload())
			return
		}
		got.mu.Lock()
		got.got = append(got.got, a)
		got.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe ack: %v", tok.Error())
	}
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return ts.Add(time.Duration(s) * time.Second) }

	g.send(1, pv("inv-1", 1, at(1)))
	g.send(2, pv("inv-1", 2, at(2)))
	waitFor(t, 30*time.Second, "ack through 2", func() bool { a := got.last(); return a != nil && a.Through == 2 })

	// 3..5 and 7 go missing: cloudd asks for them.
	g.send(6, pv("inv-1", 6, at(6)))
	g.send(8, pv("inv-1", 8, at(8)))
	waitFor(t, 30*time.Second, "a resend request for 3..5 and 7", func() bool {
		a := got.last()
		return a != nil && a.Through == 2 && len(a.Resend) == 2 &&
			a.Resend[0] == (payload.SeqRange{First: 3, Last: 5}) && a.Resend[1] == (payload.SeqRange{First: 7, Last: 7})
	})
	// The gateway sends 7 again and declares 3..5 dropped (outbox full).
	g.send(7, pv("inv-1", 7, at(7)))
	d := &payload.Dropped{Site: "harbor", Gateway: "gw-1", Sent: time.Now().UTC(),
		Losses: []payload.Loss{{SeqRange: payload.SeqRange{First: 3, Last: 5}, Reason: payload.LossFull}}}
	g.mustPublish(payload.DroppedTopic("harbor", "gw-1"), payload.EncodeDropped(d))
	// A forged announcement in another gateway's name is rejected.
	d.Gateway = "gw-2"
	g.mustPublish(payload.DroppedTopic("harbor", "gw-1"), payload.EncodeDropped(d))
	waitFor(t, 30*time.Second, "ack through 8", func() bool { a := got.last(); return a != nil && a.Through == 8 && len(a.Resend) == 0 })

	st, _ := r.fleet.Gateway("harbor", "gw-1")
	if st.Seq.DeclaredLost != 3 || st.Seq.Lost != 0 || st.Seq.Reordered != 1 || st.Seq.GapsOpen != 0 || st.Rejected["identity"] != 1 {
		t.Fatalf("gateway state %+v (rejected %v): want 3 declared, 7 reordered, 1 identity rejection", st.Seq, st.Rejected)
	}
	if n := r.in.Stats().AcksSent; n < 3 {
		t.Fatalf("AcksSent %d, want at least the 3 acks seen", n)
	}
	if n := count(t, influx, db, "pv", "ac_power_w"); n != 5 {
		t.Fatalf("%d points, want 5 (1, 2, 6, 7, 8)", n)
	}
	if !strings.Contains(r.logs.String(), "declared sequence numbers") {
		t.Errorf("the declaration was not logged:\n%s", r.logs.String())
	}
}
