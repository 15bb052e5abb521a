package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// instance is one Bus running with a fleet, recording what it got.
type instance struct {
	bus    *Bus
	fleet  *fleet.Fleet
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	topics map[string]int    // topic → messages delivered
	last   map[string][]byte // topic → last payload
	parts  map[string]int    // gateway key → partition of its messages
}

func startInstance(t *testing.T, c *natstest.Cluster, name string, partitions int) *instance {
	t.Helper()
	in := &instance{fleet: fleet.New(time.Minute, nil), topics: map[string]int{}, last: map[string][]byte{}, parts: map[string]int{}, done: make(chan struct{})}
	b, err := New(Config{
		URLs: strings.Split(c.URLs(), ","), Instance: name, Partitions: partitions,
		AckWait: 3 * time.Second, LeaseTTL: 6 * time.Second, Fleet: in.fleet,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	in.bus = b
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		defer close(in.done)
		if err := b.Run(ctx, in.deliver); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	t.Cleanup(in.stop)
	return in
}

func (in *instance) stop() {
	in.cancel()
	<-in.done
}

func (in *instance) deliver(m ingest.Message) {
	in.mu.Lock()
	in.topics[m.Topic()]++
	in.last[m.Topic()] = append([]byte(nil), m.Payload()...)
	if bm, ok := m.(*message); ok {
		if _, part := topicOf(bm.m.Subject()); part >= 0 {
			if tp, err := payload.ParseTopic(m.Topic()); err == nil {
				in.parts[tp.Site+"/"+tp.Gateway] = part
			}
		}
	}
	in.mu.Unlock()
	m.Ack()
}

func (in *instance) count(topic string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.topics[topic]
}

func mqttClient(t *testing.T, urls []string, id string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().SetClientID(id).SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true)
	for _, u := range urls {
		o.AddBroker(u)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect %v: %v", urls, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, body []byte, retained bool) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, body)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Two instances share the partitions evenly and disjointly, a third one
// takes its share, and when two stop the last one holds them all. MQTT
// messages published to a node's listener reach the instance holding the
// gateway's partition, which is the one Partition computes.
func TestPartitionsSpreadAndMove(t *testing.T) {
	c := natstest.Start(t, 3)
	const parts = 6
	a := startInstance(t, c, "a", parts)
	testenv.WaitFor(t, 60*time.Second, "a to hold every partition", func() bool { return len(a.bus.Owned()) == parts })
	b := startInstance(t, c, "b", parts)
	testenv.WaitFor(t, 60*time.Second, "a and b to hold three partitions each", func() bool {
		oa, ob := a.bus.Owned(), b.bus.Owned()
		return len(oa) == 3 && len(ob) == 3 && !slices.ContainsFunc(oa, func(p int) bool { return slices.Contains(ob, p) })
	})

	pub := mqttClient(t, c.MQTTURLs()[1:2], "test-pub")
	var topics []string
	for i := range 12 {
		site, gw := "site", fmt.Sprintf("gw-%d", i)
		topic := payload.TopicFor(site, gw, payload.Telemetry)
		topics = append(topics, topic)
		publish(t, pub, topic, []byte(`{}`), false)
	}
	testenv.WaitFor(t, 60*time.Second, "every message delivered once", func() bool {
		for _, tp := range topics {
			if a.count(tp)+b.count(tp) != 1 {
				return false
			}
		}
		return true
	})
	for _, in := range []*instance{a, b} {
		in.mu.Lock()
		for k, p := range in.parts {
			site, gw, _ := strings.Cut(k, "/")
			if want := Partition(site, gw, parts); p != want {
				t.Errorf("%s: stream partition %d, Partition says %d", k, p, want)
			}
		}
		in.mu.Unlock()
	}

	d := startInstance(t, c, "d", parts)
	testenv.WaitFor(t, 60*time.Second, "two partitions each on three instances", func() bool {
		return len(a.bus.Owned()) == 2 && len(b.bus.Owned()) == 2 && len(d.bus.Owned()) == 2
	})
	b.stop()
	d.stop()
	testenv.WaitFor(t, 60*time.Second, "a to hold every partition again", func() bool { return len(a.bus.Owned()) == parts })
	if s := a.bus.Stats(); s.Lost != 0 {
		t.Errorf("a gave up %d partitions without handing them over", s.Lost)
	}
}

// Every instance gets every gateway's last status (birth or Last Will),
// also the ones published before it started.
func TestStatusReachesEveryInstance(t *testing.T) {
	c := natstest.Start(t, 3)
	a := startInstance(t, c, "a", 2)
	// Holding partitions, a follows the status stream already.
	testenv.WaitFor(t, 60*time.Second, "a ready", func() bool { return len(a.bus.Owned()) == 2 })
	pub := mqttClient(t, c.MQTTURLs()[:1], "status-pub")
	st := payload.StatusTopic("site", "gw-1")
	publish(t, pub, st, []byte(`{"v":1,"site":"site","gateway":"gw-1","online":true}`), true)
	publish(t, pub, st, []byte(`{"v":1,"site":"site","gateway":"gw-1","online":false}`), true)
	testenv.WaitFor(t, 60*time.Second, "a to get both statuses", func() bool { return a.count(st) == 2 })
	b := startInstance(t, c, "b", 2)
	testenv.WaitFor(t, 60*time.Second, "b to get the last status", func() bool { return b.count(st) == 1 })
}

func TestConfigErrors(t *testing.T) {
	f := fleet.New(time.Minute, nil)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Instance: "a", Fleet: f}, "no NATS URL"},
		{Config{URLs: []string{"a:4222"}, Instance: "a", Fleet: f}, `NATS URL 1 "a:4222": want nats://host:port`},
		{Config{URLs: []string{"nats://a:4222"}, Instance: "a.b", Fleet: f}, `instance "a.b"`},
		{Config{URLs: []string{"nats://a:4222"}, Instance: "a", Partitions: 5000, Fleet: f}, "partitions 5000: want 1 to 1024"},
		{Config{URLs: []string{"nats://a:4222"}, Instance: "a", LeaseTTL: time.Millisecond, Fleet: f}, "lease ttl 1ms"},
		{Config{URLs: []string{"nats://a:4222"}, Instance: "a"}, "no fleet"},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestTopicOf(t *testing.T) {
	for _, c := range []struct {
		subj, topic string
		part        int
	}{
		{"p.7.gw.v1.s.g.telemetry", "gw/v1/s/g/telemetry", 7},
		{"gw.v1.s.g.status", "gw/v1/s/g/status", -1},
		{"p.x.gw", "p/x/gw", -1},
	} {
		topic, part := topicOf(c.subj)
		if topic != c.topic || part != c.part {
			t.Errorf("%s: %s %d, want %s %d", c.subj, topic, part, c.topic, c.part)
		}
	}
}

// A gateway whose connection dies without DISCONNECT gets its Last Will
// published by the node it was on; every instance sees it offline.
func TestLastWillReachesEveryInstance(t *testing.T) {
	c := natstest.Start(t, 3)
	a := startInstance(t, c, "a", 2)
	b := startInstance(t, c, "b", 2)
	testenv.WaitFor(t, 60*time.Second, "both instances following the status stream", func() bool {
		return len(a.bus.Owned()) == 1 && len(b.bus.Owned()) == 1
	})
	st := payload.StatusTopic("site", "gw-9")
	will := payload.EncodeStatus(&payload.Status{Site: "site", Gateway: "gw-9", Online: false, Time: time.Now()})
	var conn net.Conn
	o := mqtt.NewClientOptions().AddBroker(c.MQTTURLs()[2]).SetClientID("gw-9").SetCleanSession(true).
		SetBinaryWill(st, will, 1, true).SetAutoReconnect(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			nc, err := net.Dial("tcp", u.Host)
			conn = nc
			return nc, err
		})
	gw := mqtt.NewClient(o)
	if tok := gw.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	birth := payload.EncodeStatus(&payload.Status{Site: "site", Gateway: "gw-9", Online: true, Time: time.Now()})
	publish(t, gw, st, birth, true)
	online := func(in *instance) (bool, bool) {
		in.mu.Lock()
		body := in.last[st]
		in.mu.Unlock()
		s, err := ingest.ValidateStatus(st, body)
		if err != nil {
			return false, false
		}
		return s.Online, true
	}
	testenv.WaitFor(t, 60*time.Second, "the birth at both instances", func() bool {
		oa, _ := online(a)
		ob, _ := online(b)
		return oa && ob
	})
	conn.Close() // no DISCONNECT: the server publishes the will
	testenv.WaitFor(t, 60*time.Second, "the Last Will at both instances", func() bool {
		oa, ka := online(a)
		ob, kb := online(b)
		return ka && kb && !oa && !ob
	})
}
