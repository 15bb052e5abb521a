// Package natsbus is cloudd's scale-out engine: NATS with JetStream behind
// several cloudd instances (cloudd -engine nats).
//
// # What lives in the cluster
//
// Gateways speak MQTT, unchanged, to the NATS servers' MQTT listeners; the
// topic gw/v1/{site}/{gateway}/telemetry is the NATS subject
// gw.v1.{site}.{gateway}.telemetry. Bus creates (or checks) these in the
// cluster, all with the configured replicas (R3 in a 3-node cluster):
//
//   - the stream {Stream} (default LULING), work-queue retention, capturing
//     the telemetry, events and dropped subjects. Its subject transform
//     prefixes each message with its partition,
//     p.{{partition(P,1,2)}}.gw.v1.{site}.{gateway}.{suffix}: NATS hashes
//     the site and gateway tokens (FNV-1a) into one of P partitions, so all
//     of a gateway's messages share one partition (Partition computes the
//     same number);
//   - one durable pull consumer per partition, part-{n}, filtering
//     p.{n}.>, explicit acks (AckWait), any number of redeliveries;
//   - the stream {Stream}_STATUS, the last status message of every
//     gateway (birth or Last Will). Every instance reads all of it with an
//     ordered consumer (last per subject, then live), so every instance
//     knows every gateway's online state, as the retained topic gives it
//     with one broker;
//   - three key-value buckets: {Stream}_members (each instance's
//     heartbeat, expiring after LeaseTTL), {Stream}_leases (the holder of
//     each partition, expiring after LeaseTTL unless refreshed) and
//     {Stream}_seq (the sequence states of a partition's gateways,
//     fleet.SeqState, in one record per partition under part-{n}: one
//     write per partition and flush, however many gateways it carries).
//
// # How partitions move
//
// Every LeaseTTL/4 (at most every second) each instance refreshes its
// heartbeat and its leases (on a goroutine of their own, see lease.go) and
// computes the wanted owner of each partition from the live members
// sorted by name:
// partition n goes to member n mod len(members), so with P a multiple of
// the instance count every instance gets the same share. An instance
// takes a partition only by creating its lease key (which fails while
// another holds it), then loads the partition's sequence states into the
// fleet, then pulls. An instance that is no longer the wanted owner stops
// pulling, lets the messages it already took through to InfluxDB and
// their acknowledgements, records the partition's sequence states, forgets
// them, and deletes the lease: the next owner starts exactly where it
// stopped. A crashed instance's leases expire after LeaseTTL; its
// unacknowledged messages come again after AckWait, to the new owner.
//
// The sequence state is recorded after each write and before the
// acknowledgements (Commit), so the recorded state is never older than
// what was acknowledged: a new owner may see a redelivery of something
// already written (a duplicate: not written again) but never a gap for
// something acknowledged that will not come again. An open gap moves with
// its opening time; the gateway keeps every message until cloudd's own
// acknowledgement and resends what cloudd asks for.
//
// Each instance holds three NATS connections: one for the data (the
// pulls, their acknowledgements, the status stream), one for control (the
// members' listing, the takes, the sequence states) and one for the leases
// and the heartbeat alone, so that a renewal's reply never queues behind
// pulled messages or commits on a busy instance.
//
// Acknowledgements to gateways are published as NATS messages on
// gw.v1.{site}.{gateway}.ack; the MQTT listener delivers messages of NATS
// publishers at QoS 0. An ack is cumulative and repeated, so a lost one
// only delays the gateway's cleanup.
package natsbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/payload"
)

// Defaults of Config.
const (
	DefaultStream        = "LULING"
	DefaultPartitions    = 12
	DefaultReplicas      = 3
	DefaultAckWait       = 30 * time.Second
	DefaultLeaseTTL      = 10 * time.Second
	DefaultMaxAckPending = 20000
	// DefaultPullBatch is small on purpose: messages buffered in the
	// client are not yet in ingest's queue, where progress is reported
	// (see progress), and a large buffer of a slow instance came again
	// after the ack wait. At 64 per partition an instance at 5% of a core
	// (about 55 messages a second) held 768 messages, 14 s of its work,
	// beyond the ack wait of its test, and processed half of a backlog
	// twice; at 16 it processed 43 of 4,000 twice and drained in 50 s
	// instead of 70 (TestStarvedInstanceDrainsWithoutMoves). At half a
	// core the two drained alike (9–14 s against 11 s for 8,000).
	DefaultPullBatch = 16
	// MaxPartitions bounds Config.Partitions.
	MaxPartitions = 1024
)

// Config configures the engine.
type Config struct {
	// URLs of the cluster's NATS client ports (nats://host:4222, tls://…).
	URLs []string
	// Instance names this cloudd among the others: its heartbeat key and
	// lease value. It must be unique and stable ([A-Za-z0-9_-]).
	Instance string
	Username string
	Password string
	TLS      *tls.Config

	Stream        string        // stream name and bucket prefix (default LULING)
	Partitions    int           // partitions of the stream (default 12); fixed once the stream exists
	Replicas      int           // replicas of streams and buckets (default 3)
	AckWait       time.Duration // redelivery after this long unacknowledged (default 30s)
	LeaseTTL      time.Duration // a dead instance's partitions move after this long (default 10s)
	MaxAckPending int           // unacknowledged messages per partition (default 20000)
	PullBatch     int           // messages buffered per partition pull (default 16)

	// Fleet is cloudd's fleet: the sequence states are restored into it,
	// read from it and dropped from it.
	Fleet  *fleet.Fleet
	Logger *slog.Logger

	// Restore, when set, rebuilds the rest of the per-gateway state of a
	// partition this instance takes over (see restore.go): it gets the
	// gateways ("site/gateway") whose sequence states were recorded, before
	// the first message is pulled. An error leaves the partition to be
	// taken again at the next round.
	Restore func(ctx context.Context, gateways []string) error
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (c *Config) check() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("no NATS URL (want nats://host:4222, several comma-separated)"))
	}
	for i, u := range c.URLs {
		if !strings.Contains(u, "://") {
			errs = append(errs, fmt.Errorf("NATS URL %d %q: want nats://host:port or tls://host:port", i+1, u))
		}
	}
	if !validName(c.Instance) {
		errs = append(errs, fmt.Errorf("instance %q: want 1 to 64 of A-Z a-z 0-9 _ -", c.Instance))
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if !validName(c.Stream) {
		errs = append(errs, fmt.Errorf("stream %q: want 1 to 64 of A-Z a-z 0-9 _ -", c.Stream))
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to %d", c.Partitions, MaxPartitions))
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1 to 5", c.Replicas))
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("lease ttl %v: want at least 1s", c.LeaseTTL))
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.PullBatch <= 0 {
		c.PullBatch = DefaultPullBatch
	}
	if c.Fleet == nil {
		errs = append(errs, errors.New("no fleet"))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("natsbus: %w", err)
	}
	return nil
}

// Partition returns the partition of a gateway's messages: the number the
// stream's subject transform computes with partition(n,1,2) (FNV-1a over
// the site and gateway tokens, modulo n).
func Partition(site, gw string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(site))
	h.Write([]byte(gw))
	return int(h.Sum32() % uint32(n))
}

// Bus is the engine as an ingest.Source and ingest.Committer. Create it
// with New, hand it to ingest.Config.Source.
type Bus struct {
	cfg Config
	log *slog.Logger

	nc      *nats.Conn
	js      jetstream.JetStream // the data connection: pulls, acks, status
	ctlNC   *nats.Conn
	ctl     jetstream.JetStream // the control connection: members, takes, commits
	leaseNC *nats.Conn          // the lease connection: renewals and heartbeats only
	members jetstream.KeyValue  // on ctl: the members listed
	beat    jetstream.KeyValue  // the members bucket on the lease connection: the heartbeat
	leases  jetstream.KeyValue  // on the lease connection
	seqs    jetstream.KeyValue
	ready   atomic.Bool

	mu    sync.Mutex
	parts map[int]*owned          // partitions held
	gws   map[int]map[string]bool // per partition: "site/gateway" keys seen or restored

	acquired, released, lost atomic.Uint64
	stale                    atomic.Uint64 // messages not acknowledged: their partition was given up
	late                     atomic.Uint64 // times a lease's renewal was not confirmed before the fence
	beating                  atomic.Bool   // a heartbeat is in flight
}

// owned is a partition this instance holds.
type owned struct {
	lmu       sync.Mutex // guards rev, refreshed and renewing (the renewer's)
	rev       uint64     // lease revision
	refreshed time.Time  // when the last renewal confirmed was sent
	renewing  bool       // a renewal is in flight
	// late is set while no renewal was confirmed within the fence: the
	// partition's messages are then neither acknowledged nor committed
	// until the lease bucket answers (see renew).
	late atomic.Bool

	stop     context.CancelFunc
	done     chan struct{} // closed when the puller returned
	leaving  bool          // stopping, to hand it over
	since    time.Time     // when leaving started
	inflight atomic.Int64  // delivered, not yet acknowledged

	pmu     sync.Mutex
	pending map[*message]time.Time // delivered, not yet acknowledged: since when, or since the last progress report
}

var (
	_ ingest.Source    = (*Bus)(nil)
	_ ingest.Committer = (*Bus)(nil)
)

// New checks cfg; it makes no network call.
func New(cfg Config) (*Bus, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Bus{
		cfg: cfg, log: cfg.Logger,
		parts: map[int]*owned{},
		gws:   map[int]map[string]bool{},
	}, nil
}

func (b *Bus) String() string {
	return "nats " + strings.Join(b.cfg.URLs, ",") + " stream " + b.cfg.Stream
}

// Connected reports whether the connection is up and the stream set up.
func (b *Bus) Connected() bool {
	return b.ready.Load() && b.nc != nil && b.nc.IsConnected() && b.ctlNC.IsConnected() && b.leaseNC.IsConnected()
}

// Owned returns the partitions this instance holds and pulls, in order.
func (b *Bus) Owned() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int
	for p, o := range b.parts {
		if !o.leaving {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Publish sends a gateway its acknowledgement on the NATS subject of its
// MQTT topic.
func (b *Bus) Publish(topic string, body []byte) {
	if b.nc == nil {
		return
	}
	if err := b.nc.Publish(strings.ReplaceAll(topic, "/", "."), body); err != nil {
		b.log.Debug("publish failed", "topic", topic, "err", err)
	}
}

// Run connects, sets the cluster up, takes its share of the partitions and
// delivers their messages until ctx ends; then it lets its partitions go.
func (b *Bus) Run(ctx context.Context, deliver func(ingest.Message)) error {
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("nats connection lost; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if b.cfg.Username != "" {
		opts = append(opts, nats.UserInfo(b.cfg.Username, b.cfg.Password))
	}
	if b.cfg.TLS != nil {
		opts = append(opts, nats.Secure(b.cfg.TLS))
	}
	// Two connections: one connection reads in order, so on the data
	// connection a lease renewal's reply waits behind every message the
	// partitions' pulls have in flight; an instance held to a CPU quota
	// then renewed too late and lost its leases while it drained a
	// backlog. Leases, heartbeats and sequence states go over their own.
	nc, err := nats.Connect(strings.Join(b.cfg.URLs, ","), append(opts, nats.Name("cloudd "+b.cfg.Instance))...)
	if err != nil {
		return fmt.Errorf("natsbus: connect to %s: %w", strings.Join(b.cfg.URLs, ","), err)
	}
	defer nc.Close()
	ctl, err := nats.Connect(strings.Join(b.cfg.URLs, ","), append(opts, nats.Name("cloudd "+b.cfg.Instance+" control"))...)
	if err != nil {
		return fmt.Errorf("natsbus: connect to %s: %w", strings.Join(b.cfg.URLs, ","), err)
	}
	defer ctl.Close()
	// A third for the leases alone: their renewals must not wait behind
	// the members' listing, the takes' reads or the commits (see renew).
	lc, err := nats.Connect(strings.Join(b.cfg.URLs, ","), append(opts, nats.Name("cloudd "+b.cfg.Instance+" leases"))...)
	if err != nil {
		return fmt.Errorf("natsbus: connect to %s: %w", strings.Join(b.cfg.URLs, ","), err)
	}
	defer lc.Close()
	b.nc, b.ctlNC, b.leaseNC = nc, ctl, lc
	if b.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("natsbus: %w", err)
	}
	if b.ctl, err = jetstream.New(ctl); err != nil {
		return fmt.Errorf("natsbus: %w", err)
	}
	if err := b.setupRetry(ctx); err != nil {
		return err
	}
	b.ready.Store(true)
	defer b.ready.Store(false)

	status, err := b.followStatus(ctx, deliver)
	if err != nil {
		return err
	}
	defer status.Stop()

	var wg sync.WaitGroup
	rctx, stopRenew := context.WithCancel(ctx)
	var side sync.WaitGroup
	side.Add(2)
	go func() {
		defer side.Done()
		b.renew(rctx)
	}()
	// The progress reports too run on their own: behind a balancing
	// round that took seconds on a starved instance they came after the
	// ack wait, and the messages they were for came again.
	go func() {
		defer side.Done()
		tick := time.NewTicker(b.tickEvery())
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				b.progress()
			}
		}
	}()
	tick := time.NewTicker(b.tickEvery())
	defer tick.Stop()
	for {
		b.balance(ctx, &wg, deliver)
		select {
		case <-ctx.Done():
			stopRenew()
			side.Wait()
			b.shutdown(&wg)
			return nil
		case <-tick.C:
		}
	}
}

// progress tells the server that messages waiting in ingest's queue for
// longer than a third of AckWait are still being worked on (a backlog
// longer than AckWait would otherwise come again while its first copy
// waits, and be written twice for nothing). A crashed instance sends no
// progress: its messages come again AckWait after the last report.
func (b *Bus) progress() {
	b.mu.Lock()
	held := make([]*owned, 0, len(b.parts))
	for _, o := range b.parts {
		held = append(held, o)
	}
	b.mu.Unlock()
	now := time.Now()
	for _, o := range held {
		o.pmu.Lock()
		for m, t := range o.pending {
			if now.Sub(t) >= b.cfg.AckWait/3 {
				m.m.InProgress()
				o.pending[m] = now
			}
		}
		o.pmu.Unlock()
	}
}

// tickEvery is the balancing period: a quarter of the lease TTL, at most
// a second (a handover takes a few rounds).
func (b *Bus) tickEvery() time.Duration {
	return min(max(b.cfg.LeaseTTL/4, 250*time.Millisecond), time.Second)
}

// setupRetry runs setup until it succeeds: a cluster that is still
// electing its leaders answers with errors for a while.
func (b *Bus) setupRetry(ctx context.Context) error {
	delay := 200 * time.Millisecond
	var last string
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := b.setup(sctx)
		cancel()
		if err == nil {
			b.log.Info("nats engine ready", "stream", b.cfg.Stream, "partitions", b.cfg.Partitions, "replicas", b.cfg.Replicas, "instance", b.cfg.Instance)
			return nil
		}
		var fatal *setupError
		if errors.As(err, &fatal) {
			return err
		}
		if err.Error() != last {
			b.log.Warn("nats engine: cannot set up the stream yet; retrying", "err", err)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// setupError is a setup failure that retrying cannot fix.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

func (b *Bus) partitionDest() string {
	return "p.{{partition(" + strconv.Itoa(b.cfg.Partitions) + ",1,2)}}.gw.v1.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
}

// setup creates or checks the streams, the consumers and the buckets.
func (b *Bus) setup(ctx context.Context) error {
	root := strings.ReplaceAll(payload.TopicRoot, "/", ".")
	scfg := jetstream.StreamConfig{
		Name: b.cfg.Stream,
		Subjects: []string{
			root + ".*.*." + payload.SuffixTelemetry,
			root + ".*.*." + payload.SuffixEvents,
			root + ".*.*." + payload.SuffixDropped,
		},
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: root + ".*.*.*", Destination: b.partitionDest()},
		Retention:        jetstream.WorkQueuePolicy,
		Storage:          jetstream.FileStorage,
		Replicas:         b.cfg.Replicas,
		MaxAge:           7 * 24 * time.Hour,
	}
	if s, err := b.js.Stream(ctx, scfg.Name); err == nil {
		info := s.CachedInfo()
		if tr := info.Config.SubjectTransform; tr == nil || tr.Destination != scfg.SubjectTransform.Destination {
			got := "none"
			if tr != nil {
				got = tr.Destination
			}
			return &setupError{fmt.Errorf("natsbus: stream %s exists with the partition transform %q, not %q: the partition count is fixed once the stream exists (use its count, or another -nats-stream)", scfg.Name, got, scfg.SubjectTransform.Destination)}
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("natsbus: stream %s: %w", scfg.Name, err)
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, scfg); err != nil {
		return fmt.Errorf("natsbus: stream %s: %w", scfg.Name, err)
	}
	st := jetstream.StreamConfig{
		Name:              b.cfg.Stream + "_STATUS",
		Subjects:          []string{root + ".*.*." + payload.SuffixStatus},
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.FileStorage,
		Replicas:          b.cfg.Replicas,
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, st); err != nil {
		return fmt.Errorf("natsbus: stream %s: %w", st.Name, err)
	}
	for p := range b.cfg.Partitions {
		c := jetstream.ConsumerConfig{
			Durable:       "part-" + strconv.Itoa(p),
			FilterSubject: "p." + strconv.Itoa(p) + ".>",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       b.cfg.AckWait,
			MaxAckPending: b.cfg.MaxAckPending,
			MaxDeliver:    -1,
		}
		if _, err := b.js.CreateOrUpdateConsumer(ctx, scfg.Name, c); err != nil {
			return fmt.Errorf("natsbus: consumer %s of stream %s: %w", c.Durable, scfg.Name, err)
		}
	}
	kvs := []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&b.members, jetstream.KeyValueConfig{Bucket: b.cfg.Stream + "_members", TTL: b.cfg.LeaseTTL}},
		{new(jetstream.KeyValue), jetstream.KeyValueConfig{Bucket: b.cfg.Stream + "_leases", TTL: b.cfg.LeaseTTL}},
		{&b.seqs, jetstream.KeyValueConfig{Bucket: b.cfg.Stream + "_seq"}},
	}
	for _, k := range kvs {
		k.cfg.Replicas = b.cfg.Replicas
		k.cfg.Storage = jetstream.FileStorage
		kv, err := b.ctl.CreateOrUpdateKeyValue(ctx, k.cfg)
		if err != nil {
			return fmt.Errorf("natsbus: bucket %s: %w", k.cfg.Bucket, err)
		}
		*k.kv = kv
	}
	lj, err := jetstream.New(b.leaseNC)
	if err != nil {
		return fmt.Errorf("natsbus: %w", err)
	}
	if b.leases, err = lj.KeyValue(ctx, b.cfg.Stream+"_leases"); err != nil {
		return fmt.Errorf("natsbus: bucket %s_leases: %w", b.cfg.Stream, err)
	}
	if b.beat, err = lj.KeyValue(ctx, b.cfg.Stream+"_members"); err != nil {
		return fmt.Errorf("natsbus: bucket %s_members: %w", b.cfg.Stream, err)
	}
	return nil
}

// message is a stream message on its way through ingest.
type message struct {
	b     *Bus
	m     jetstream.Msg
	topic string
	part  int
	owner *owned // nil: status (nothing to acknowledge)
}

func (m *message) Topic() string   { return m.topic }
func (m *message) Payload() []byte { return m.m.Data() }
func (m *message) Ack() {
	if m.owner == nil {
		return
	}
	if m.b.holds(m.part, m.owner) && !m.owner.late.Load() {
		if err := m.m.Ack(); err != nil {
			m.b.log.Debug("ack failed; the message comes again", "topic", m.topic, "err", err)
		}
	} else {
		// The partition was given up since the message was pulled (and
		// may have been taken again, from the sequence states recorded
		// before): acknowledged now, it would never come to the state
		// that misses it, which would count its number lost. Or its
		// lease's renewal is late, and another instance may hold it by
		// now. Left unacknowledged, it comes again after AckWait, below
		// the sequence grace, and the holder takes it or drops it as a
		// copy.
		m.b.stale.Add(1)
		m.b.log.Debug("not acknowledging a message of a partition given up; it comes again", "topic", m.topic, "partition", m.part)
	}
	m.owner.inflight.Add(-1)
	m.owner.pmu.Lock()
	delete(m.owner.pending, m)
	m.owner.pmu.Unlock()
}

// topicOf turns a stream subject (with or without the partition prefix)
// into the MQTT topic, and returns the partition (-1 without prefix).
func topicOf(subject string) (string, int) {
	part := -1
	if rest, ok := strings.CutPrefix(subject, "p."); ok {
		if i := strings.IndexByte(rest, '.'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				part, subject = n, rest[i+1:]
			}
		}
	}
	return strings.ReplaceAll(subject, ".", "/"), part
}

// followStatus delivers the last status of every gateway, then every new
// one.
func (b *Bus) followStatus(ctx context.Context, deliver func(ingest.Message)) (jetstream.ConsumeContext, error) {
	for {
		c, err := b.js.OrderedConsumer(ctx, b.cfg.Stream+"_STATUS", jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
		if err == nil {
			cc, err := c.Consume(func(m jetstream.Msg) {
				topic, _ := topicOf(m.Subject())
				deliver(&message{b: b, m: m, topic: topic})
			})
			if err == nil {
				return cc, nil
			}
		}
		b.log.Warn("nats engine: cannot follow the status stream yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// leaseKey is the lease bucket's key of partition p.
func leaseKey(p int) string { return "p" + strconv.Itoa(p) }

// wanted returns the partitions this instance should hold, given the live
// members.
func (b *Bus) wanted(members []string) map[int]bool {
	slices.Sort(members)
	i := slices.Index(members, b.cfg.Instance)
	out := map[int]bool{}
	if i < 0 {
		return out
	}
	for p := range b.cfg.Partitions {
		if p%len(members) == i {
			out[p] = true
		}
	}
	return out
}

// balance is one round: the members listed, partitions handed over and
// taken. The heartbeat and the leases' renewals are not its: they run on
// their own (renew), so that a slow listing or take never delays them.
func (b *Bus) balance(ctx context.Context, wg *sync.WaitGroup, deliver func(ingest.Message)) {
	if ctx.Err() != nil {
		return
	}
	roundStart := time.Now()
	op := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, max(b.cfg.LeaseTTL/4, 500*time.Millisecond))
	}
	octx, cancel := op()
	members, err := b.members.Keys(octx)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		b.log.Warn("nats engine: cannot list the members", "err", err)
		members = nil
	}
	if !slices.Contains(members, b.cfg.Instance) {
		members = append(members, b.cfg.Instance)
	}
	want := b.wanted(members)

	held := b.heldParts()

	for p, o := range held {
		switch {
		case o.late.Load():
			// Not ours for sure until the lease bucket answers.
		case o.leaving:
			octx, cancel := op()
			b.finishLeaving(octx, p, o)
			cancel()
		case !want[p]:
			b.log.Info("handing a partition over", "partition", p, "members", len(members))
			o.stop()
			b.mu.Lock()
			o.leaving, o.since = true, time.Now()
			b.mu.Unlock()
		}
	}
	taken := 0
	for p := range want {
		if held[p] != nil {
			continue
		}
		// Taking a partition reads its state (and may rebuild parking
		// from InfluxDB, Config.Restore): seconds on a busy machine. A
		// round takes more than one only within a tick, so that the
		// handovers and the progress reports of the next round are not
		// held up (the renewals do not wait for it).
		if taken > 0 && time.Since(roundStart) > b.tickEvery() {
			break
		}
		taken++
		octx, cancel := op()
		sent := time.Now()
		rev, err := b.leases.Create(octx, leaseKey(p), []byte(b.cfg.Instance))
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Ours, when an earlier Create timed out after it was stored.
			if e, gerr := b.leases.Get(octx, leaseKey(p)); gerr == nil && string(e.Value()) == b.cfg.Instance {
				rev, err, sent = e.Revision(), nil, storedAt(e)
			}
		}
		cancel()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				b.log.Warn("nats engine: cannot take a lease", "partition", p, "err", err)
			}
			continue // held by another: it hands over, or its lease expires
		}
		if err := b.take(ctx, wg, p, rev, sent, deliver); err != nil {
			b.log.Warn("nats engine: cannot take a partition; letting it go", "partition", p, "err", err)
			octx, cancel := op()
			b.leases.Delete(octx, leaseKey(p), jetstream.LastRevision(rev))
			cancel()
		}
	}
}

// take loads partition p's sequence states into the fleet and starts
// pulling it.
func (b *Bus) take(ctx context.Context, wg *sync.WaitGroup, p int, rev uint64, sent time.Time, deliver func(ingest.Message)) error {
	lctx, cancel := context.WithTimeout(ctx, b.cfg.LeaseTTL/2)
	defer cancel()
	states := map[string]fleet.SeqState{}
	e, err := b.seqs.Get(lctx, stateKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("sequence states: %w", err)
	default:
		var bad []error
		if states, bad = parsePartitionState(e.Value()); len(bad) > 0 {
			b.log.Warn("nats engine: ignoring bad sequence states", "partition", p, "err", errors.Join(bad...))
		}
	}
	cons, err := b.js.Consumer(lctx, b.cfg.Stream, "part-"+strconv.Itoa(p))
	if err != nil {
		return fmt.Errorf("consumer part-%d: %w", p, err)
	}
	if err := b.restore(lctx, p, states); err != nil {
		return err
	}
	b.mu.Lock()
	set := map[string]bool{}
	for k, st := range states {
		site, gw, _ := strings.Cut(k, "/")
		b.cfg.Fleet.RestoreSeq(site, gw, st)
		set[k] = true
	}
	b.gws[p] = set
	pctx, stop := context.WithCancel(ctx)
	o := &owned{rev: rev, refreshed: sent, stop: stop, done: make(chan struct{}), pending: map[*message]time.Time{}}
	b.parts[p] = o
	b.mu.Unlock()
	b.acquired.Add(1)
	b.log.Info("took a partition", "partition", p, "gateways", len(states))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(o.done)
		b.pull(pctx, p, o, cons, deliver)
	}()
	return nil
}

// pull delivers partition p's messages until ctx ends; the messages
// already buffered are delivered too (Drain).
func (b *Bus) pull(ctx context.Context, p int, o *owned, cons jetstream.Consumer, deliver func(ingest.Message)) {
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(b.cfg.PullBatch))
		if err != nil {
			b.log.Warn("nats engine: cannot pull a partition; retrying", "partition", p, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		drain := context.AfterFunc(ctx, it.Drain)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					b.log.Warn("nats engine: pulling a partition failed; pulling again", "partition", p, "err", err)
				}
				break
			}
			topic, _ := topicOf(m.Subject())
			if t, err := payload.ParseTopic(topic); err == nil {
				b.note(p, t.Site+"/"+t.Gateway)
			}
			o.inflight.Add(1)
			msg := &message{b: b, m: m, topic: topic, part: p, owner: o}
			o.pmu.Lock()
			o.pending[msg] = time.Now()
			o.pmu.Unlock()
			deliver(msg)
		}
		drain()
		it.Stop()
	}
}

// note records that gateway key k has messages in partition p.
func (b *Bus) note(p int, k string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if set := b.gws[p]; set != nil {
		set[k] = true
	}
}

// finishLeaving completes a handover once the puller stopped and every
// message it delivered was acknowledged: the partition's sequence states
// are recorded and forgotten, and the lease deleted. A handover that does
// not complete within AckWait (InfluxDB down, say) gives the partition up
// without recording: its unacknowledged messages come again to the next
// owner anyway.
func (b *Bus) finishLeaving(ctx context.Context, p int, o *owned) {
	select {
	case <-o.done:
	default:
		return
	}
	if n := o.inflight.Load(); n > 0 {
		if time.Since(o.since) > b.cfg.AckWait {
			b.lose(p, o, fmt.Sprintf("%d messages still unacknowledged after the ack wait", n))
		}
		return
	}
	keys := b.gatewaysOf(p)
	if err := b.Commit(ctx, keys); err != nil {
		b.log.Warn("nats engine: cannot record a partition's sequence states; retrying", "partition", p, "err", err)
		return
	}
	if !b.drop(p, o, keys) {
		return // given up meanwhile
	}
	if err := b.deleteLease(ctx, p, o); err != nil {
		b.log.Warn("nats engine: cannot delete a lease; it expires", "partition", p, "err", err)
	}
	b.released.Add(1)
	b.log.Info("handed a partition over", "partition", p, "gateways", len(keys))
}

// lose gives partition p up at once, without recording its state (once:
// a hold already given up or handed over is left alone).
func (b *Bus) lose(p int, o *owned, why string) {
	o.stop()
	if !b.drop(p, o, b.gatewaysOf(p)) {
		return
	}
	b.lost.Add(1)
	b.log.Warn("nats engine: partition given up", "partition", p, "reason", why)
}

// holds reports whether o is still this instance's hold of partition p
// (being handed over included: a handover waits for its last messages).
func (b *Bus) holds(p int, o *owned) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.parts[p] == o
}

// drop forgets partition p, held as o, and its gateways' sequence
// states. It reports false when o was no longer the hold of p.
func (b *Bus) drop(p int, o *owned, keys []string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.parts[p] != o {
		return false
	}
	delete(b.parts, p)
	delete(b.gws, p)
	for _, k := range keys {
		site, gw, _ := strings.Cut(k, "/")
		b.cfg.Fleet.DropSeq(site, gw)
	}
	return true
}

func (b *Bus) gatewaysOf(p int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.gws[p]))
	for k := range b.gws[p] {
		out = append(out, k)
	}
	return out
}

// Commit records the sequence states of the partitions of the given
// gateways ("site/gateway") in the sequence bucket. A partition being
// handed over is still held: its last messages commit as usual, which is
// what the handover waits for. Commit fails when a gateway is in a
// partition this instance gave up, so that ingest does not acknowledge its
// messages: they go to the new holder.
func (b *Bus) Commit(ctx context.Context, gateways []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	parts := map[int]bool{}
	for _, k := range gateways {
		site, gw, ok := strings.Cut(k, "/")
		if !ok {
			continue
		}
		p := Partition(site, gw, b.cfg.Partitions)
		b.mu.Lock()
		o := b.parts[p]
		b.mu.Unlock()
		if o == nil {
			return fmt.Errorf("gateway %s is in partition %d, which this instance no longer holds", k, p)
		}
		if o.late.Load() {
			return fmt.Errorf("gateway %s is in partition %d, whose lease renewal is late: not recording until the lease is confirmed", k, p)
		}
		parts[p] = true
	}
	futures := make([]jetstream.PubAckFuture, 0, len(parts))
	prefix := "$KV." + b.cfg.Stream + "_seq."
	for p := range parts {
		states := map[string]fleet.SeqState{}
		for _, k := range b.gatewaysOf(p) {
			site, gw, _ := strings.Cut(k, "/")
			if st := b.cfg.Fleet.SeqState(site, gw); st.Next != 0 {
				states[k] = st
			}
		}
		f, err := b.ctl.PublishAsync(prefix+stateKey(p), marshalPartitionState(states))
		if err != nil {
			return fmt.Errorf("record sequence states of partition %d: %w", p, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("record sequence states (%s): %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("record sequence states: %w", ctx.Err())
		}
	}
	return nil
}

// shutdown stops every puller and deletes the leases, so that the other
// instances take the partitions over at once. What was not acknowledged
// comes again to them after AckWait; the recorded states are those of the
// last commits.
func (b *Bus) shutdown(wg *sync.WaitGroup) {
	b.mu.Lock()
	parts := make(map[int]*owned, len(b.parts))
	for p, o := range b.parts {
		o.stop()
		parts[p] = o
	}
	b.mu.Unlock()
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for p, o := range parts {
		if err := b.deleteLease(ctx, p, o); err != nil {
			b.log.Warn("nats engine: cannot delete a lease on the way out; it expires", "partition", p, "err", err)
		}
	}
	if err := b.members.Delete(ctx, b.cfg.Instance); err != nil {
		b.log.Debug("nats engine: cannot delete the heartbeat", "err", err)
	}
	b.log.Info("nats engine stopped", "partitions_released", len(parts))
}

// Stats are the engine's counters.
type Stats struct {
	Owned    int    // partitions held now
	Acquired uint64 // partitions taken
	Released uint64 // partitions handed over cleanly
	Lost     uint64 // partitions given up without handing over
	Stale    uint64 // messages left unacknowledged because their partition was given up meanwhile
	Late     uint64 // times a lease's renewal was not confirmed before its fence (acknowledgements held)
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	return Stats{Owned: len(b.Owned()), Acquired: b.acquired.Load(), Released: b.released.Load(), Lost: b.lost.Load(), Stale: b.stale.Load(), Late: b.late.Load()}
}

// WriteMetrics writes the engine's counters in the Prometheus text format.
func (b *Bus) WriteMetrics(w io.Writer) {
	s := b.Stats()
	for _, m := range []struct {
		name, typ, help string
		v               any
	}{
		{"luling_cloud_nats_partitions_owned", "gauge", "Stream partitions this instance holds and pulls.", s.Owned},
		{"luling_cloud_nats_partitions_acquired_total", "counter", "Partitions this instance took.", s.Acquired},
		{"luling_cloud_nats_partitions_released_total", "counter", "Partitions this instance handed over after writing and acknowledging their messages.", s.Released},
		{"luling_cloud_nats_partitions_lost_total", "counter", "Partitions this instance gave up without handing over (lease lost or expired, handover stuck).", s.Lost},
		{"luling_cloud_nats_leases_late_total", "counter", "Times a lease's renewal was not confirmed before its fence: the partition's acknowledgements were held until the lease bucket answered.", s.Late},
		{"luling_cloud_nats_stale_messages_total", "counter", "Messages left unacknowledged because their partition was given up after they were pulled; they come again to the holder.", s.Stale},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}

// heldParts is a snapshot of the partitions this instance holds.
func (b *Bus) heldParts() map[int]*owned {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := make(map[int]*owned, len(b.parts))
	for p, o := range b.parts {
		held[p] = o
	}
	return held
}
