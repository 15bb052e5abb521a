package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestCityUsageErrors(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-gateways 0", "gateways 0"},
		{"-devices -1", "devices -1"},
		{"-event-share 0.95", "event share 0.95"},
		{"-site Town", `site "Town"`},
		{"-broker ,", "no broker URL"},
		{"-duration -1s", "--duration -1s"},
		{"-gateways x", "invalid value"},
		{"extra", `unexpected argument "extra"`},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"city"}, strings.Fields(c.args)...), &out, &errOut)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("city %s = %v, want a usage error naming %q", c.args, err, c.want)
		}
	}
}

// devsim city publishes valid batches for every gateway and, with no cloudd
// acknowledging, reports everything it sent as unconfirmed.
func TestCityReportsWhatItSent(t *testing.T) {
	broker := testenv.Mosquitto(t)
	var got atomic.Int64
	var bad atomic.Value
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("watch"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("gw/v1/town/+/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		tp, err := payload.ParseTopic(m.Topic())
		if err == nil && tp.Kind != 0 {
			var b *payload.Batch
			if b, err = payload.DecodeBatch(m.Payload()); err == nil && (b.Gateway != tp.Gateway || b.Kind != tp.Kind) {
				err = errors.New("batch identity differs from its topic")
			}
			got.Add(1)
		}
		if err != nil {
			bad.Store(err.Error())
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	var out, errOut syncBuffer
	args := strings.Fields("city -site town -gateways 3 -devices 20 -bay-change 1s -batch-every 100ms -duration 2s -drain 10ms -report-every 0 -json -broker " + broker.URL())
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("devsim city: %v\n%s", err, errOut.String())
	}
	var r citysim.Report
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if len(r.PerGateway) != 3 || r.Messages == 0 || r.Unconfirmed != r.Messages {
		t.Fatalf("report: %+v: want 3 gateways, every message unconfirmed (nobody acknowledges)", r.Totals)
	}
	var seqs uint64
	for _, g := range r.PerGateway {
		if g.LastSeq == 0 || g.Through != 0 {
			t.Errorf("%s: last seq %d, through %d", g.Gateway, g.LastSeq, g.Through)
		}
		seqs += g.LastSeq
	}
	if seqs != r.Messages {
		t.Errorf("per-gateway last seqs add up to %d, %d messages sealed", seqs, r.Messages)
	}
	testenv.WaitFor(t, 10*time.Second, "every message at the subscriber", func() bool { return uint64(got.Load()) >= r.Messages })
	if e := bad.Load(); e != nil {
		t.Errorf("invalid message: %v", e)
	}
}
