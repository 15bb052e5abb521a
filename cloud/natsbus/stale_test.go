package natsbus

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// A message pulled before its partition was given up and taken again is
// not acknowledged when ingest finishes it: the states the partition was
// taken again with do not know it, so it must come again (after AckWait)
// rather than leave its number a gap that later counts as lost.
func TestStaleMessageIsNotAcknowledged(t *testing.T) {
	c := natstest.Start(t, 3)
	got := make(chan ingest.Message, 16)
	b, err := New(Config{
		URLs: strings.Split(c.URLs(), ","), Instance: "solo", Partitions: 1,
		AckWait: 3 * time.Second, LeaseTTL: 6 * time.Second, Fleet: fleet.New(time.Minute, nil),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Run(ctx, func(m ingest.Message) { got <- m }); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 60*time.Second, "the partition to be held", func() bool { return len(b.Owned()) == 1 })

	topic := payload.TopicFor("site", "gw-1", payload.Telemetry)
	publish(t, mqttClient(t, c.MQTTURLs()[:1], "test-pub"), topic, []byte(`{"seq":1}`), false)
	next := func(what string) ingest.Message {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case m := <-got:
				if m.Topic() == topic {
					return m
				}
				m.Ack() // status and the like
			case <-deadline:
				t.Fatalf("no %s of %s within 60s", what, topic)
				return nil
			}
		}
	}
	first := next("delivery")

	b.mu.Lock()
	o := b.parts[0]
	b.mu.Unlock()
	b.lose(0, o, "given up by the test")
	testenv.WaitFor(t, 60*time.Second, "the partition to be taken again", func() bool { return len(b.Owned()) == 1 })
	first.Ack()
	if s := b.Stats(); s.Stale != 1 {
		t.Errorf("stale messages %d, want 1", s.Stale)
	}
	again := next("redelivery")
	if string(again.Payload()) != string(first.Payload()) {
		t.Errorf("redelivered %q, want %q", again.Payload(), first.Payload())
	}
	again.Ack()
	if s := b.Stats(); s.Stale != 1 {
		t.Errorf("stale messages %d after acknowledging the redelivery, want still 1", s.Stale)
	}
}
