package ingest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// chanSource is a Source fed by the test: the transport under ingest, not
// a broker (the NATS engine's own tests run the real one). It records the
// order of commits and acknowledgements.
type chanSource struct {
	msgs chan *chanMsg

	mu     sync.Mutex
	events []string // "commit site/gw" and "ack topic", in order
	acks   map[string]int
	fail   atomic.Bool // Commit fails while set
}

type chanMsg struct {
	src          *chanSource
	topic        string
	body         []byte
	acknowledged atomic.Int32
}

func (m *chanMsg) Topic() string   { return m.topic }
func (m *chanMsg) Payload() []byte { return m.body }
func (m *chanMsg) Ack() {
	m.acknowledged.Add(1)
	m.src.mu.Lock()
	m.src.events = append(m.src.events, "ack "+m.topic)
	m.src.mu.Unlock()
}

func (s *chanSource) Run(ctx context.Context, deliver func(ingest.Message)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-s.msgs:
			deliver(m)
		}
	}
}

func (s *chanSource) Publish(topic string, body []byte) {
	s.mu.Lock()
	s.acks[topic]++
	s.mu.Unlock()
}
func (s *chanSource) Connected() bool { return true }
func (s *chanSource) String() string  { return "test source" }

func (s *chanSource) Commit(_ context.Context, gws []string) error {
	if s.fail.Load() {
		return errors.New("bucket unavailable")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range gws {
		s.events = append(s.events, "commit "+g)
	}
	return nil
}

// Messages from a Source are written like those of the MQTT client; the
// Committer sees each flush's gateways before any of its messages is
// acknowledged; a failed commit leaves the messages unacknowledged (the
// source delivers them again, and the copy is a duplicate).
func TestSourceCommitsBeforeAck(t *testing.T) {
	influx, db := testenv.NewDatabase(t)
	src := &chanSource{msgs: make(chan *chanMsg), acks: map[string]int{}}
	f := fleet.New(time.Hour, nil)
	r := startIngest(t, ingest.Config{Source: src, AckEvery: 10 * time.Millisecond}, influx.URL, db, f)
	g := &gateway{t: t, site: "s1", gw: "g1"}
	t0 := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	topic := payload.TopicFor("s1", "g1", payload.Telemetry)
	first := &chanMsg{src: src, topic: topic, body: g.batch(1, payload.Telemetry, pv("inv-1", 1, t0))}
	src.msgs <- first
	waitFor(t, 30*time.Second, "the first message acknowledged", func() bool { return first.acknowledged.Load() == 1 })
	src.mu.Lock()
	events := append([]string(nil), src.events...)
	src.mu.Unlock()
	if len(events) != 2 || events[0] != "commit s1/g1" || events[1] != "ack "+topic {
		t.Fatalf("events %q, want the commit of s1/g1, then the ack", events)
	}
	waitFor(t, 30*time.Second, "an ack published to the gateway", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.acks[payload.AckTopic("s1", "g1")] > 0
	})

	src.fail.Store(true)
	second := &chanMsg{src: src, topic: topic, body: g.batch(2, payload.Telemetry, pv("inv-1", 2, t0.Add(time.Second)))}
	src.msgs <- second
	waitFor(t, 30*time.Second, "the second message written", func() bool { return r.in.Stats().Written == 2 })
	if n := second.acknowledged.Load(); n != 0 {
		t.Fatalf("acknowledged %d times although its commit failed", n)
	}
	src.fail.Store(false)
	again := &chanMsg{src: src, topic: topic, body: second.body}
	src.msgs <- again
	waitFor(t, 30*time.Second, "the redelivery acknowledged", func() bool { return again.acknowledged.Load() == 1 })
	if st := r.in.Stats(); st.Written != 2 || st.Skipped != 1 {
		t.Fatalf("stats %+v: want 2 written, the redelivery skipped as a duplicate", st)
	}
	if n := count(t, influx, db, "pv", "ac_power_w"); n != 2 {
		t.Fatalf("%d points in InfluxDB, want 2", n)
	}
}
