package citysim

import (
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func seqs(hs []held) []uint64 {
	var out []uint64
	for _, h := range hs {
		out = append(out, h.seq)
	}
	return out
}

func ack(t *testing.T, through uint64, resend ...payload.SeqRange) []byte {
	t.Helper()
	return payload.EncodeAck(&payload.Ack{Site: "s", Gateway: "g", Through: through, Resend: resend, Sent: time.Unix(1, 0)})
}

// A gateway deletes what an acknowledgement covers, publishes requested
// ranges again, everything after a reconnect, and the unconfirmed tail when
// acknowledgements stall; it ignores acknowledgements for someone else.
func TestGatewayDelivery(t *testing.T) {
	wait := 15 * time.Second
	g := &gateway{site: "s", id: "g", confirmWait: wait}
	for s := uint64(1); s <= 8; s++ {
		g.held = append(g.held, held{seq: s})
	}
	g.published = 8
	t0 := time.Unix(100, 0)

	g.onAck(ack(t, 3, payload.SeqRange{First: 5, Last: 5}, payload.SeqRange{First: 7, Last: 9}), t0)
	if got := seqs(g.held); !reflect.DeepEqual(got, []uint64{4, 5, 6, 7, 8}) {
		t.Fatalf("held after ack through 3: %v", got)
	}
	if got := seqs(g.due(t0)); !reflect.DeepEqual(got, []uint64{5, 7, 8}) {
		t.Fatalf("resend of 5 and 7..9: %v", got)
	}
	if got := g.due(t0.Add(time.Second)); got != nil {
		t.Fatalf("nothing due right after a resend: %v", seqs(got))
	}
	g.onAck(ack(t, 3), t0.Add(wait-time.Second))
	if got := g.due(t0.Add(wait - time.Second)); got != nil {
		t.Fatalf("stalled for less than the wait: %v", seqs(got))
	}
	if got := g.due(t0.Add(2 * wait)); got != nil {
		t.Fatalf("no acknowledgement arrived: nothing is stalled yet: %v", seqs(got))
	}
	g.onAck(ack(t, 3), t0.Add(2*wait))
	if got := seqs(g.due(t0.Add(2 * wait))); !reflect.DeepEqual(got, []uint64{4, 5, 6, 7, 8}) || g.stalls != 1 {
		t.Fatalf("stalled tail: %v (stalls %d)", got, g.stalls)
	}
	g.replay = true
	if got := seqs(g.due(t0.Add(2 * wait))); !reflect.DeepEqual(got, []uint64{4, 5, 6, 7, 8}) || g.stalls != 1 {
		t.Fatalf("replay after reconnect: %v (stalls %d)", got, g.stalls)
	}
	wrong := payload.EncodeAck(&payload.Ack{Site: "s", Gateway: "other", Through: 8, Sent: t0})
	for _, body := range [][]byte{wrong, []byte(`{"v":1`), ack(t, 2)[:5]} {
		g.onAck(body, t0)
	}
	if g.badAcks != 3 || len(g.held) != 5 {
		t.Fatalf("bad acks %d, held %v: want 3 ignored, nothing deleted", g.badAcks, seqs(g.held))
	}
	g.onAck(ack(t, 8), t0)
	if g.held != nil || g.through != 8 || g.acks != 4 {
		t.Fatalf("after ack through 8: held %v through %d acks %d", seqs(g.held), g.through, g.acks)
	}
}

func TestMergeRanges(t *testing.T) {
	r := func(a, b uint64) payload.SeqRange { return payload.SeqRange{First: a, Last: b} }
	for _, c := range []struct {
		dst, add, want []payload.SeqRange
	}{
		{nil, []payload.SeqRange{r(5, 6)}, []payload.SeqRange{r(5, 6)}},
		{[]payload.SeqRange{r(1, 2), r(10, 12)}, []payload.SeqRange{r(5, 6)}, []payload.SeqRange{r(1, 2), r(5, 6), r(10, 12)}},
		{[]payload.SeqRange{r(1, 2), r(10, 12)}, []payload.SeqRange{r(3, 9)}, []payload.SeqRange{r(1, 12)}},
		{[]payload.SeqRange{r(4, 5)}, []payload.SeqRange{r(1, 2), r(20, 30)}, []payload.SeqRange{r(1, 2), r(4, 5), r(20, 30)}},
		{[]payload.SeqRange{r(4, 5), r(8, 9)}, []payload.SeqRange{r(5, 8)}, []payload.SeqRange{r(4, 9)}},
	} {
		if got := payload.MergeRanges(append([]payload.SeqRange(nil), c.dst...), c.add); !reflect.DeepEqual(got, c.want) {
			t.Errorf("merge %v + %v = %v, want %v", c.dst, c.add, got, c.want)
		}
	}
}

// Traffic follows the configured rates: over many periods, bay changes per
// gateway and period average Devices×BatchEvery/BayChange, and the share of
// access and inverter records is EventShare.
func TestTrafficRates(t *testing.T) {
	cfg := Config{Brokers: []string{"tcp://x:1"}, Gateways: 1, Devices: 300, Seed: 3}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	tr := newTraffic(&cfg)
	g := &gateway{occupied: make([]bool, cfg.Devices)}
	var bays, events, access int
	const periods = 2000
	t0 := time.Unix(0, 0)
	for i := 0; i < periods; i++ {
		from, to := t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i+1)*time.Second)
		tele, ev := tr.observe(g, from, to)
		var last time.Time
		for _, rec := range append(append([]payload.Record(nil), tele...), ev...) {
			if err := payload.CheckSchema(&rec); err != nil {
				t.Fatal(err)
			}
			if !rec.Time.After(from) || rec.Time.After(to) {
				t.Fatalf("record at %v outside (%v, %v]", rec.Time, from, to)
			}
		}
		for _, rec := range tele {
			if rec.Measurement == "parking_bay" {
				bays++
			} else {
				events++
			}
			if !rec.Time.After(last) {
				t.Fatalf("telemetry times not ascending")
			}
			last = rec.Time
		}
		events += len(ev)
		access += len(ev)
	}
	perPeriod := float64(bays) / periods
	share := float64(events) / float64(events+bays)
	if perPeriod < 7.2 || perPeriod > 7.8 { // 300 bays / 40 s
		t.Errorf("%.2f bay changes per second, want about 7.5", perPeriod)
	}
	if share < 0.09 || share > 0.11 || access < events/3 {
		t.Errorf("event share %.3f (access %d of %d), want about 0.1, half access", share, access, events)
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := Config{Site: "Bad Site", Gateways: 0, Devices: 0, EventShare: 2, KeepAlive: 10 * time.Millisecond}
	err := cfg.defaults()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"no broker URL", `site "Bad Site"`, "gateways 0", "devices 0", "event share 2", "keep-alive 10ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Gateways named by IDs carry those ids, in the report too; ids that are
// invalid, repeated or of another count than Gateways are errors naming
// which.
func TestConfigIDs(t *testing.T) {
	c, err := New(Config{Brokers: []string{"tcp://127.0.0.1:1"}, IDs: []string{"north-7", "south-2"}, Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range c.Report().PerGateway {
		got = append(got, g.Gateway)
	}
	if strings.Join(got, ",") != "north-7,south-2" || c.cfg.Gateways != 2 {
		t.Errorf("gateways %v (count %d), want north-7, south-2 (2)", got, c.cfg.Gateways)
	}
	if c.gws[0].topics[0] != "gw/v1/city/north-7/telemetry" {
		t.Errorf("first gateway's telemetry topic %q", c.gws[0].topics[0])
	}
	cfg := Config{Brokers: []string{"tcp://127.0.0.1:1"}, Gateways: 3, Devices: 1, IDs: []string{"a", "Bad", "a"}}
	err = cfg.defaults()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "ids: want as many") {
		t.Errorf("error %q: 3 gateways with 3 ids are fine", err)
	}
	for _, want := range []string{`id 2 "Bad"`, `id 3 "a": the same as id 1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	cfg = Config{Brokers: []string{"tcp://127.0.0.1:1"}, Gateways: 3, Devices: 1, IDs: []string{"a", "b"}}
	if err := cfg.defaults(); err == nil || !strings.Contains(err.Error(), "gateways 3 with 2 ids") {
		t.Errorf("3 gateways with 2 ids: %v, want an error naming both counts", err)
	}
}

// A city whose broker is not there says so when it is stopped.
func TestRunWithoutBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := New(Config{Brokers: []string{"tcp://" + addr}, Gateways: 3, Devices: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "3 of 3 gateways never connected to tcp://"+addr) {
		t.Fatalf("Run = %v, want an error naming the 3 gateways and the broker", err)
	}
}
