package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

const (
	site = "lot-a"
	gw   = "gw-01"
)

// memSource is an in-memory outbox: it keeps unacknowledged messages in
// sequence order and records every Ack.
type memSource struct {
	mu       sync.Mutex
	pending  []payload.Message // unacknowledged, by Seq
	wake     chan struct{}     // closed when messages are added
	acks     map[uint64]int    // seq -> times acknowledged
	ackCalls int
	// out is what Pending handed out and Ack has not acknowledged yet;
	// maxOut is its largest size.
	out    map[uint64]bool
	maxOut int
}

func newMemSource() *memSource {
	return &memSource{wake: make(chan struct{}), acks: map[uint64]int{}, out: map[uint64]bool{}}
}

func (m *memSource) add(msgs ...payload.Message) {
	m.mu.Lock()
	m.pending = append(m.pending, msgs...)
	sort.Slice(m.pending, func(i, j int) bool { return m.pending[i].Seq < m.pending[j].Seq })
	close(m.wake)
	m.wake = make(chan struct{})
	m.mu.Unlock()
}

func (m *memSource) Pending(ctx context.Context, after uint64, max int) ([]payload.Message, error) {
	if max <= 0 {
		return nil, fmt.Errorf("memsource: max %d", max)
	}
	for {
		m.mu.Lock()
		i := sort.Search(len(m.pending), func(i int) bool { return m.pending[i].Seq > after })
		if i < len(m.pending) {
			j := min(len(m.pending), i+max)
			out := append([]payload.Message(nil), m.pending[i:j]...)
			for _, msg := range out {
				m.out[msg.Seq] = true
			}
			m.maxOut = len(m.out)
			m.mu.Unlock()
			return out, nil
		}
		wake := m.wake
		m.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (m *memSource) Ack(seqs ...uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ackCalls++
	for _, s := range seqs {
		m.acks[s]++
		delete(m.out, s)
		i := sort.Search(len(m.pending), func(i int) bool { return m.pending[i].Seq >= s })
		if i < len(m.pending) && m.pending[i].Seq == s {
			m.pending = append(m.pending[:i], m.pending[i+1:]...)
		}
	}
	return nil
}

func (m *memSource) ackedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.acks)
}

func (m *memSource) snapshot() (acks map[uint64]int, pending int, maxOut int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	acks = make(map[uint64]int, len(m.acks))
	for k, v := range m.acks {
		acks[k] = v
	}
	return acks, len(m.pending), m.maxOut
}

// message builds a sealed message whose body is a real v1 batch of n
// parking-bay records.
func message(t testing.TB, seq uint64, kind payload.Kind, n int) payload.Message {
	t.Helper()
	recs := make([]payload.Record, n)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i] = payload.Record{Measurement: "parking_bay", Time: t0.Add(time.Duration(i) * time.Second),
			Tags:   map[string]string{"device": fmt.Sprintf("bay-%03d", i%200), "lot": "a", "zone": "z1", "bay": fmt.Sprintf("%03d", i%200)},
			Fields: map[string]payload.Value{"occupied": payload.Bool(i%3 == 0), "distance_cm": payload.Float(100 + float64(i%50))}}
		if kind == payload.Event {
			recs[i] = payload.Record{Measurement: "door", Time: t0.Add(time.Duration(i) * time.Second),
				Tags:   map[string]string{"door": fmt.Sprintf("d%d", i)},
				Fields: map[string]payload.Value{"state": payload.String("open"), "open": payload.Bool(true)}}
		}
	}
	body, err := payload.AppendBatch(nil, &payload.Batch{Site: site, Gateway: gw, Seq: seq, Kind: kind, Sent: t0, Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	return payload.Message{Seq: seq, Kind: kind, Records: n, Body: body}
}

// received is one message a test subscriber got.
type received struct {
	topic    string
	qos      byte
	retained bool
	body     []byte
}

// subscriber is a plain Paho client standing in for the cloud.
type subscriber struct {
	c   mqtt.Client
	mu  sync.Mutex
	got []received
}

// subscribe connects a subscriber to url and subscribes filter at QoS 1.
// With clientID set it uses a persistent session (CleanSession=false) and
// reconnects by itself, so it gets everything queued while it was away.
func subscribe(t testing.TB, url, clientID, filter string) *subscriber {
	t.Helper()
	s := &subscriber{}
	o := mqtt.NewClientOptions().AddBroker(url).SetProtocolVersion(4)
	if clientID != "" {
		o.SetClientID(clientID).SetCleanSession(false).SetAutoReconnect(true).
			SetMaxReconnectInterval(300 * time.Millisecond).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond)
	} else {
		o.SetClientID(fmt.Sprintf("obs-%d", time.Now().UnixNano())).SetAutoReconnect(false)
	}
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { s.record(m) })
	s.c = mqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect %s: %v", url, tok.Error())
	}
	if tok := s.c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { s.record(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *subscriber) record(m mqtt.Message) {
	s.mu.Lock()
	s.got = append(s.got, received{topic: m.Topic(), qos: m.Qos(), retained: m.Retained(), body: append([]byte(nil), m.Payload()...)})
	s.mu.Unlock()
}

func (s *subscriber) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// seqs counts the batches received per sequence number.
func (s *subscriber) seqs(t testing.TB) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	for _, r := range s.all() {
		tp, err := payload.ParseTopic(r.topic)
		if err != nil || (tp.Suffix != payload.SuffixTelemetry && tp.Suffix != payload.SuffixEvents) {
			continue
		}
		b, err := payload.DecodeBatch(r.body)
		if err != nil {
			t.Fatalf("batch on %s does not decode: %v", r.topic, err)
		}
		out[b.Seq]++
	}
	return out
}

// statuses returns the decoded status messages received, in order.
func (s *subscriber) statuses(t testing.TB) []*payload.Status {
	t.Helper()
	var out []*payload.Status
	for _, r := range s.all() {
		if r.topic != payload.StatusTopic(site, gw) {
			continue
		}
		st, err := payload.DecodeStatus(r.body)
		if err != nil {
			t.Fatalf("status does not decode: %v: %s", err, r.body)
		}
		out = append(out, st)
	}
	return out
}

// retainedStatus connects a fresh client and returns the retained status.
func retainedStatus(t testing.TB, url string) (*payload.Status, received) {
	t.Helper()
	s := subscribe(t, url, "", payload.StatusTopic(site, gw))
	waitFor(t, 10*time.Second, "the retained status", func() bool { return len(s.all()) > 0 })
	r := s.all()[0]
	st, err := payload.DecodeStatus(r.body)
	if err != nil {
		t.Fatalf("retained status: %v", err)
	}
	return st, r
}

var waitFor = testenv.WaitFor

// start runs u until the test ends (or the returned stop is called).
func start(t testing.TB, u *Uplink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("UPLINK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func baseOptions(t testing.TB, brokers ...string) Options {
	return Options{
		Brokers:        brokers,
		Site:           site,
		Gateway:        gw,
		ClientID:       fmt.Sprintf("gw-%d", time.Now().UnixNano()),
		KeepAlive:      30 * time.Second,
		ConnectTimeout: 5 * time.Second,
		ReconnectMax:   500 * time.Millisecond,
		Logger:         testLogger(t),
	}
}

func newUplink(t testing.TB, src Source, o Options) *Uplink {
	t.Helper()
	u, err := New(src, o)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// proxy is a TCP relay between the uplink and the broker, so a test can cut
// the connection without a DISCONNECT or swallow what the broker sends.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  map[*pair]bool
	wg     sync.WaitGroup
	closed atomic.Bool
	refuse atomic.Bool // close new connections at once
	// delay holds back what the broker sends by this long (a delay line:
	// latency without a throughput limit), set before connections arrive.
	delay time.Duration
}

type pair struct {
	client, server net.Conn
	hold           atomic.Bool // discard broker-to-client bytes
}

func (p *pair) close() {
	p.client.Close()
	p.server.Close()
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, pairs: map[*pair]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.closed.Store(true)
		ln.Close()
		p.sever()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "tcp://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		p.pairs[pr] = true
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(s, c)
			pr.close()
		}()
		go func() {
			defer p.wg.Done()
			p.relayBack(pr)
			pr.close()
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
		}()
	}
}

// relayBack copies broker-to-client bytes, honouring hold and delay.
func (p *proxy) relayBack(pr *pair) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	var line chan chunk
	var lineDone chan struct{}
	if p.delay > 0 {
		line = make(chan chunk, 4096)
		lineDone = make(chan struct{})
		go func() {
			defer close(lineDone)
			for c := range line {
				time.Sleep(time.Until(c.due)) // plays the network's latency; judges nothing
				if _, err := pr.client.Write(c.b); err != nil {
					pr.close()
				}
			}
		}()
		defer func() { close(line); <-lineDone }()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := pr.server.Read(buf)
		if n > 0 && !pr.hold.Load() {
			if line != nil {
				line <- chunk{due: time.Now().Add(p.delay), b: append([]byte(nil), buf[:n]...)}
			} else if _, werr := pr.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sever closes every relayed connection on both sides at once.
func (p *proxy) sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.close()
	}
}

// hold makes the current connections swallow everything the broker sends
// (PUBACKs included); later connections relay normally.
func (p *proxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.hold.Store(true)
	}
}

var errBroken = errors.New("broken")

// persistentMosquitto starts testenv.Mosquitto and makes its data folder
// writable for the broker. Started as root, Mosquitto drops to its own user,
// which cannot write the test's private temporary folder, so without this
// its persistence (sessions and queued messages across a restart) silently
// fails with "Permission denied".
func persistentMosquitto(t testing.TB) *testenv.Broker {
	t.Helper()
	b := testenv.Mosquitto(t)
	root := filepath.Dir(t.TempDir())
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o777)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("make the broker's data folder writable: %v", err)
	}
	return b
}
