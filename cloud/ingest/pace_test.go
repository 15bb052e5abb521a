package ingest_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// timedMsg notes when ingest took it in and when it acknowledged it.
type timedMsg struct {
	topic string
	body  []byte
	in    atomic.Int64 // unix ns
	acked atomic.Int64 // unix ns
}

func (m *timedMsg) Topic() string   { return m.topic }
func (m *timedMsg) Payload() []byte { return m.body }
func (m *timedMsg) Ack()            { m.acked.Store(time.Now().UnixNano()) }

// backlogSource delivers its messages as fast as ingest takes them, as a
// stream engine with a backlog does.
type backlogSource struct {
	msgs []*timedMsg
	done atomic.Bool // every message delivered
}

func (s *backlogSource) Run(ctx context.Context, deliver func(ingest.Message)) error {
	for _, m := range s.msgs {
		if ctx.Err() != nil {
			return nil
		}
		deliver(m)
		m.in.Store(time.Now().UnixNano())
	}
	s.done.Store(true)
	<-ctx.Done()
	return nil
}
func (s *backlogSource) Publish(string, []byte) {}
func (s *backlogSource) Connected() bool        { return true }
func (s *backlogSource) String() string         { return "backlog" }

// A backlog larger than the queue, written slowly (InfluxDB answering
// each write of 20 messages after 100 ms): the queue holds about
// QueueTime of the writer's rate, not its 4,096 messages, so a message
// waits about a second between being taken in and acknowledged instead of
// the twenty that the full queue would be at this rate.
func TestQueueIsBoundInTime(t *testing.T) {
	influx, db := testenv.NewDatabase(t)
	gate := newInfluxGate(t, influx.URL)
	gate.setRule(func(string) gateAction { return gateAction{delay: 100 * time.Millisecond} })
	const n = 2000
	src := &backlogSource{}
	g := &gateway{t: t, site: "s1", gw: "g1"}
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	topic := payload.TopicFor("s1", "g1", payload.Telemetry)
	for i := range n {
		src.msgs = append(src.msgs, &timedMsg{topic: topic, body: g.batch(uint64(i+1), payload.Telemetry, pv("inv-1", float64(i), t0.Add(time.Duration(i)*time.Second)))})
	}
	r := startIngest(t, ingest.Config{Source: src, BatchPoints: 20, Writes: 1, QueueTime: time.Second}, gate.URL(), db, fleet.New(time.Hour, nil))

	var peak, limit int64
	var mu sync.Mutex
	testenv.WaitFor(t, 2*time.Minute, "the backlog written", func() bool {
		st := r.in.Stats()
		mu.Lock()
		peak, limit = max(peak, st.Queued), max(limit, st.QueueLimit)
		mu.Unlock()
		return st.Acked == n && src.done.Load()
	})
	var longest time.Duration
	for _, m := range src.msgs {
		longest = max(longest, time.Duration(m.acked.Load()-m.in.Load()))
	}
	st := r.in.Stats()
	t.Logf("%d messages at %.0f/s: queued at most %d (limit at most %d), longest wait %v", n, st.Rate, peak, limit, longest.Round(time.Millisecond))
	if peak > limit+1 {
		t.Errorf("queued at most %d, above the largest limit %d", peak, limit)
	}
	if peak > 1000 {
		t.Errorf("queued at most %d messages: the queue was bound by its size, not by time", peak)
	}
	if longest > 6*time.Second {
		t.Errorf("a message waited %v between being taken in and acknowledged; want about the queue time (1s)", longest)
	}
	if c := count(t, influx, db, "pv", "ac_power_w"); c != n {
		t.Errorf("%d points in InfluxDB, want %d", c, n)
	}
}
