// Package ingest is cloudd's path from the broker to InfluxDB.
//
// A paho MQTT client with a persistent session (CleanSession false, a stable
// client id) subscribes to every gateway's telemetry and events through a
// shared subscription ($share/{group}/gw/v1/+/+/telemetry and …/events,
// QoS 1) and to the retained status topics (not shared: every instance
// needs every gateway's birth and Last Will). Automatic acknowledgement is
// off: a message is acknowledged to the broker only after its points were
// written to InfluxDB, or after it was rejected as invalid. Until then the
// broker keeps it, so neither a cloudd crash nor an InfluxDB outage loses
// anything; the price is redelivery, which the sequence check counts as a
// duplicate and does not write again.
//
// The writer goroutine runs the sequence check (fleet.Admit) on each batch
// before writing it, with a hash of the line protocol of its records: a
// number implausibly far ahead is rejected, an identical redelivery is not
// written again, and a number seen before with different content is not
// written but raises an alert point (rule seq_conflict) instead. Records of
// measurements outside the schema and the configured allowance are left
// out of the written points and counted.
//
// How paho behaves here (paho.mqtt.golang v1.5.1, read in its source):
//   - With OrderMatters (the default) one router goroutine calls the handler
//     for each message in arrival order; while the handler blocks, paho
//     stops reading the connection. The handler therefore only validates and
//     hands the message to a bounded queue; the queue is sized above the
//     broker's in-flight window (the broker sends no more unacknowledged
//     QoS 1 messages than that), so in practice it never blocks, and when it
//     does (InfluxDB down) that is the intended backpressure.
//   - msg.Ack sends the PUBACK through the connection the message came on.
//     An Ack after that connection was lost is dropped by paho; the broker
//     redelivers the message on the next connection (persistent session).
//     Acknowledgements are sent in arrival order, as MQTT 3.1.1 §4.6 asks:
//     one writer goroutine acknowledges messages in queue order.
//   - On reconnect paho does not resubscribe by itself; a persistent session
//     keeps the subscriptions on the broker, but a broker that lost the
//     session (restart without persistence, session expiry) would not. The
//     OnConnect handler therefore subscribes on every connection.
//   - Messages the broker delivers from a stored session can arrive before
//     the new SUBSCRIBE is acknowledged; they are routed to the default
//     publish handler, which is the only handler used.
//
// Instead of its own MQTT client, Ingest can take messages from a Source
// (Config.Source; the NATS JetStream engine in cloud/natsbus): the same
// writer, sequence check and acknowledgements, with the source's Ack per
// message. A source that is also a Committer records the sequence state of
// each flush's gateways after the write and before the acknowledgements.
//
// The writer goroutine turns batches into line protocol (with the derived
// parking_lot points, see fleet.Parking), writes up to BatchPoints points
// per request as soon as the queue runs empty or the batch is full, with
// up to Writes requests in flight (see writes.go: whatever order they
// complete in, messages are acknowledged in arrival order), retries
// with exponential backoff while InfluxDB is unavailable (reporting every
// ReportEvery how long and how many messages wait), and splits a batch that
// InfluxDB rejects (HTTP 4xx) to log and drop only the bad messages.
package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/semaphore"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/payload"
)

// LineWriter writes newline-separated line protocol. Errors wrap
// influxw.ErrUnavailable (retry later) or influxw.ErrRejected (drop).
type LineWriter interface {
	Write(ctx context.Context, lines []byte) error
}

// Config configures the ingest client.
type Config struct {
	BrokerURL string // tcp://host:1883, ssl://host:8883, ws://…
	ClientID  string // stable across restarts: the broker keeps the session under it
	Username  string
	Password  string
	TLS       *tls.Config
	// Group is the shared-subscription group; empty subscribes without
	// $share/ (a single instance).
	Group string

	QueueMessages int   // messages between the MQTT handler and the writer; default 4096
	QueueBytes    int64 // payload bytes queued at most; default 64 MiB
	// QueueTime bounds the queue in time: a message is taken in only
	// while the queue holds less than this long of the writer's measured
	// rate (at least 128 messages and what fills Writes writes of
	// BatchPoints, at most QueueMessages; see pace.go). Default
	// DefaultQueueTime.
	QueueTime   time.Duration
	BatchPoints int // points per InfluxDB request at most; default 5000
	// Writes is how many InfluxDB requests may be in flight at once
	// (default DefaultWrites, at most MaxWrites); 1 writes one at a time.
	// Whatever the order they complete in, messages are acknowledged in
	// arrival order, each only after every earlier write completed.
	Writes      int
	Grace       time.Duration // a sequence gap open this long counts as lost; default 60s
	ReportEvery time.Duration // report period while InfluxDB is down; default 10s
	RetryMin    time.Duration // first retry delay; default 100ms
	RetryMax    time.Duration // longest retry delay; default 5s
	KeepAlive   time.Duration // MQTT keepalive; default 30s

	// AckEvery is the shortest time between two acknowledgements to one
	// gateway (default 1s); ResendAfter is how long a gap stays open
	// before cloudd asks the gateway to send it again, and how often it
	// asks again (default 5s). See Acknowledgements in the package doc.
	AckEvery    time.Duration
	ResendAfter time.Duration
	// AckRepeat is how often an online gateway hears its last ack again
	// without new traffic (default 30s), so that a lost ack does not keep
	// messages in its outbox and a gateway can tell a stalled confirmation.
	AckRepeat time.Duration

	// Source, when set, replaces the MQTT client: messages come from it and
	// acknowledgements to gateways go through it (see Source). BrokerURL
	// and the MQTT settings are then not used.
	Source Source

	// AllowMeasurements names measurements written besides payload.Schema
	// and payload.GatewayMeasurements; "*" allows every measurement.
	// Records of other measurements are dropped and counted.
	AllowMeasurements []string

	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.BrokerURL == "" && c.Source == nil {
		return errors.New("ingest: empty broker URL")
	}
	if c.ClientID == "" && c.Source == nil {
		return errors.New("ingest: empty client id (it must be stable so that the broker keeps the session)")
	}
	if c.QueueMessages <= 0 {
		c.QueueMessages = 4096
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 64 << 20
	}
	if c.BatchPoints <= 0 {
		c.BatchPoints = 5000
	}
	if c.QueueTime <= 0 {
		c.QueueTime = DefaultQueueTime
	}
	switch {
	case c.Writes == 0:
		c.Writes = DefaultWrites
	case c.Writes < 0 || c.Writes > MaxWrites:
		return fmt.Errorf("ingest: %d InfluxDB writes in flight: want 1 to %d", c.Writes, MaxWrites)
	}
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = 10 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = 5 * time.Second
		if c.RetryMax < c.RetryMin {
			c.RetryMax = c.RetryMin
		}
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.AckEvery <= 0 {
		c.AckEvery = time.Second
	}
	if c.ResendAfter <= 0 {
		c.ResendAfter = 5 * time.Second
	}
	if c.AckRepeat <= 0 {
		c.AckRepeat = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Subscriptions returns the topic filters subscribed for a shared group.
func Subscriptions(group string) []string {
	prefix := ""
	if group != "" {
		prefix = "$share/" + group + "/"
	}
	return []string{
		prefix + payload.TopicRoot + "/+/+/" + payload.SuffixTelemetry,
		prefix + payload.TopicRoot + "/+/+/" + payload.SuffixEvents,
		prefix + payload.TopicRoot + "/+/+/" + payload.SuffixDropped,
		payload.TopicRoot + "/+/+/" + payload.SuffixStatus,
	}
}

// item is one received message on its way to acknowledgement.
type item struct {
	msg   Message
	batch *payload.Batch // nil: rejected or status, acknowledge only
	// dropped is a gateway's announcement of numbers it will never send,
	// applied by the writer in queue order.
	dropped *payload.Dropped
	size    int64
	// Set by the writer when it admits the batch (fleet.Admit).
	hash  uint64
	write bool // the batch's points are in the pending lines
	// pend: admitted with fleet.AdmitPending; settle it when its write
	// completes (batch may be cleared by then, hence the copy).
	pend *payload.Batch
}

// Ingest is the running ingest path. Create it with New, run it with Run.
type Ingest struct {
	cfg   Config
	log   *slog.Logger
	w     LineWriter
	fleet *fleet.Fleet

	queue  chan item
	pace   *pacer
	budget *semaphore.Weighted
	limit  *limiter
	seed   maphash.Seed
	allow  map[string]bool // nil: every measurement

	connected   atomic.Bool
	influxUp    atomic.Bool
	downSince   atomic.Int64 // unix ns; 0 while up
	queued      atomic.Int64
	enqueued    atomic.Uint64 // messages put into the queue so far
	received    atomic.Uint64
	written     atomic.Uint64 // messages
	points      atomic.Uint64
	requests    atomic.Uint64
	writeErrors atomic.Uint64
	rejected    atomic.Uint64
	skipped     atomic.Uint64
	dropped     atomic.Uint64 // records
	acked       atomic.Uint64
	latency     latency      // publish→InfluxDB, see latency.go
	lastReport  atomic.Int64 // unix ns of the last outage report
	writeNanos  atomic.Int64 // time spent in write requests, summed over concurrent ones
	inFlight    atomic.Int64 // writes started and not completed
	held        atomic.Uint64

	runCtx context.Context // set by Run before connecting; read-only after
	client mqtt.Client     // set by Run before the writer starts; publishes acks
	acks   atomic.Uint64   // acknowledgements published
}

// New checks the configuration and returns an Ingest; it makes no network
// call.
func New(cfg Config, w LineWriter, f *fleet.Fleet) (*Ingest, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	in := &Ingest{
		cfg: cfg, log: cfg.Logger, w: w, fleet: f,
		queue:  make(chan item, cfg.QueueMessages),
		pace:   newPacer(cfg.QueueTime, cfg.QueueMessages, cfg.Writes*cfg.BatchPoints),
		budget: semaphore.NewWeighted(cfg.QueueBytes),
		limit:  newLimiter(20, 10*time.Second),
		seed:   maphash.MakeSeed(),
		allow:  allowed(cfg.AllowMeasurements),
	}
	in.influxUp.Store(true)
	return in, nil
}

// Run connects to the broker and ingests until ctx is done. Messages not yet
// written when it returns stay unacknowledged, and the broker delivers them
// again to the next session.
func (in *Ingest) Run(ctx context.Context) error {
	if in.cfg.Source != nil {
		return in.runSource(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.runCtx = ctx

	opts := mqtt.NewClientOptions().
		AddBroker(in.cfg.BrokerURL).
		SetClientID(in.cfg.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetKeepAlive(in.cfg.KeepAlive).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetDefaultPublishHandler(in.handle).
		SetOnConnectHandler(in.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			in.connected.Store(false)
			in.log.Warn("broker connection lost", "broker", in.cfg.BrokerURL, "err", err)
		})
	opts.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		var reason error
		switch n := n.(type) {
		case mqtt.ConnectionNotificationFailed:
			reason = n.Reason
		case mqtt.ConnectionNotificationBrokerFailed:
			reason = n.Reason
		default:
			return
		}
		if ok, sup := in.limit.allow("connect"); ok {
			in.log.Warn("cannot connect to broker; retrying", "broker", in.cfg.BrokerURL, "client_id", in.cfg.ClientID, "err", reason, "suppressed_since_last", sup)
		}
	})
	if in.cfg.Username != "" {
		opts.SetUsername(in.cfg.Username).SetPassword(in.cfg.Password)
	}
	if in.cfg.TLS != nil {
		opts.SetTLSConfig(in.cfg.TLS)
	}
	client := mqtt.NewClient(opts)
	in.client = client

	var wg sync.WaitGroup
	in.startWriter(ctx, &wg)

	tok := client.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("ingest: connect to %s as %s: %w", in.cfg.BrokerURL, in.cfg.ClientID, err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	// Stop the writer first: the handler may be blocked on a full queue
	// and returns once ctx is done. Unacknowledged messages stay with the
	// broker.
	wg.Wait()
	client.Disconnect(250)
	return nil
}

func (in *Ingest) onConnect(c mqtt.Client) {
	filters := make(map[string]byte)
	for _, f := range Subscriptions(in.cfg.Group) {
		filters[f] = 1
	}
	tok := c.SubscribeMultiple(filters, nil)
	tok.Wait()
	if err := tok.Error(); err != nil {
		in.log.Error("subscribe failed", "broker", in.cfg.BrokerURL, "err", err)
		return
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for f, q := range st.Result() {
			if q == 0x80 {
				in.log.Error("broker refused subscription", "broker", in.cfg.BrokerURL, "filter", f)
			}
		}
	}
	in.connected.Store(true)
	in.log.Info("connected to broker", "broker", in.cfg.BrokerURL, "client_id", in.cfg.ClientID, "filters", Subscriptions(in.cfg.Group))
}

// startWriter starts the writer and the pacer that bounds its queue in
// time; both end with ctx.
func (in *Ingest) startWriter(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		in.writeLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		in.pace.run(ctx, func() uint64 {
			q := in.queued.Load() // before enqueued: never more than it
			return in.enqueued.Load() - uint64(max(q, 0))
		})
	}()
}

// handle runs on paho's router goroutine for every message.
func (in *Ingest) handle(_ mqtt.Client, m mqtt.Message) { in.deliver(m) }

// deliver validates a message and queues it for the writer.
func (in *Ingest) deliver(m Message) {
	in.received.Add(1)
	it := item{msg: m, size: int64(len(m.Payload()))}
	if it.size > in.cfg.QueueBytes {
		it.size = in.cfg.QueueBytes
	}
	topic := m.Topic()
	if t, err := payload.ParseTopic(topic); err == nil && t.Suffix == payload.SuffixStatus {
		if len(m.Payload()) > 0 { // an empty retained message clears the topic
			s, err := ValidateStatus(topic, m.Payload())
			if err != nil {
				in.reject(err)
			} else {
				in.fleet.Status(s)
				in.log.Info("gateway status", "site", s.Site, "gateway", s.Gateway, "online", s.Online, "version", s.Version, "devices", len(s.Devices))
			}
		}
		it.size = 0
	} else if err == nil && t.Suffix == payload.SuffixDropped {
		d, err := ValidateDropped(topic, m.Payload())
		if err != nil {
			in.reject(err)
		} else {
			it.dropped = d
		}
	} else {
		b, err := Validate(topic, m.Payload())
		if err != nil {
			in.reject(err)
			it.size = 0
		} else {
			it.batch = b
		}
	}
	ctx := in.runCtx
	// A status is applied above; its item only carries the
	// acknowledgement, and waits for no one.
	if it.size > 0 || it.batch != nil || it.dropped != nil {
		if !in.pace.wait(ctx, &in.queued) {
			return // shutting down: the broker redelivers
		}
		if it.batch != nil {
			in.pace.took(len(it.batch.Records))
		}
	}
	if err := in.budget.Acquire(ctx, it.size); err != nil {
		return // shutting down: the broker redelivers
	}
	in.enqueued.Add(1) // first: enqueued - queued is what was completed
	in.queued.Add(1)
	select {
	case in.queue <- it:
	case <-ctx.Done():
		in.queued.Add(-1)
		in.enqueued.Add(^uint64(0))
		in.budget.Release(it.size)
	}
}

func (in *Ingest) reject(err error) {
	in.rejected.Add(1)
	var r *Rejection
	if !errors.As(err, &r) {
		r = &Rejection{Reason: fleet.ReasonSchema, Err: err}
	}
	in.fleet.Reject(r.Site, r.Gateway, r.Reason)
	if ok, suppressed := in.limit.allow("reject"); ok {
		in.log.Warn("message rejected", "reason", r.Reason, "site", r.Site, "gateway", r.Gateway, "err", r.Err, "suppressed_since_last", suppressed)
	}
}

func (in *Ingest) expire() {
	for gw, n := range in.fleet.Expire() {
		in.log.Warn("messages lost: sequence gap not filled within the grace period", "gateway", gw, "lost", n, "grace", in.cfg.Grace)
	}
}

func (in *Ingest) jumpError(topic string, seq, expected uint64) error {
	if seq > fleet.MaxSeq {
		return fmt.Errorf("topic %q: seq %d is above the highest number tracked (%d): not written", topic, seq, uint64(fleet.MaxSeq))
	}
	return fmt.Errorf("topic %q: seq %d is %d ahead of the expected %d, more than the bound %d (-seq-max-jump): not written",
		topic, seq, seq-expected, expected, in.fleet.MaxJump())
}

func (in *Ingest) dropRejected(it *item, lines []byte, err error) {
	b := it.batch
	it.batch = nil
	if it.write {
		in.fleet.Unwritten(b, it.hash)
	}
	in.fleet.Reject(b.Site, b.Gateway, fleet.ReasonInflux)
	in.rejected.Add(1)
	first := lines
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	if len(first) > 512 {
		first = first[:512]
	}
	in.log.Error("influxdb rejected a message's points; dropped", "site", b.Site, "gateway", b.Gateway, "seq", b.Seq, "err", err, "point", string(first), "points", bytes.Count(lines, []byte{'\n'}))
}

// writeRetry writes lines, retrying with backoff while InfluxDB is
// unavailable. It returns nil, an ErrRejected error, or ctx's error.
func (in *Ingest) writeRetry(ctx context.Context, lines []byte, msgs int) error {
	delay := in.cfg.RetryMin
	for {
		in.requests.Add(1)
		start := time.Now()
		err := in.w.Write(ctx, lines)
		in.writeNanos.Add(int64(time.Since(start)))
		if err == nil || errors.Is(err, influxw.ErrRejected) {
			if since := in.downSince.Swap(0); since != 0 {
				in.influxUp.Store(true)
				in.log.Info("influxdb available again", "after", time.Since(time.Unix(0, since)).Round(time.Second))
			}
			return err
		}
		in.writeErrors.Add(1)
		now := time.Now()
		last := in.lastReport.Load()
		if in.downSince.CompareAndSwap(0, now.UnixNano()) {
			in.influxUp.Store(false)
			in.lastReport.Store(now.UnixNano())
			in.log.Warn("influxdb unavailable; holding messages unacknowledged", "err", err)
		} else if now.Sub(time.Unix(0, last)) >= in.cfg.ReportEvery && in.lastReport.CompareAndSwap(last, now.UnixNano()) {
			// One report per period, however many writes are retrying.
			down := now.Sub(time.Unix(0, in.downSince.Load())).Round(time.Second)
			waiting := in.queued.Load()
			in.log.Warn(fmt.Sprintf("influxdb unavailable for %s: %d messages waiting", down, waiting),
				"down_for", down, "messages_waiting", waiting, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay *= 2
		if delay > in.cfg.RetryMax {
			delay = in.cfg.RetryMax
		}
	}
}

// Stats are the ingest counters.
type Stats struct {
	Connected bool
	InfluxUp  bool
	Received  uint64 // messages handed to cloudd by the broker
	Written   uint64 // messages whose points InfluxDB acknowledged
	Points    uint64
	Rejected  uint64
	Skipped   uint64 // acknowledged without writing: duplicates, sequence conflicts
	Dropped   uint64 // records of measurements not allowed, left out of written messages
	Acked     uint64
	AcksSent  uint64 // acknowledgements published to gateways (…/ack)
	Queued    int64  // received, not yet acknowledged
	// QueueLimit is how many messages the queue takes now (QueueTime of
	// Rate, see Config.QueueTime); Rate is the messages the writer
	// completed a second, over the last 10 s.
	QueueLimit  int64
	Rate        float64
	Requests    uint64
	WriteErrors uint64
	// WritesInFlight are InfluxDB writes started and not completed (at
	// most MaxInFlight, Config.Writes); WritesHeld counts writes that
	// completed while an earlier one was still in flight, and so waited
	// for it before their messages were acknowledged; WriteTime is the
	// time spent in write requests, summed over concurrent ones.
	WritesInFlight int64
	MaxInFlight    int
	WritesHeld     uint64
	WriteTime      time.Duration
}

// Stats returns the current counters.
func (in *Ingest) Stats() Stats {
	return Stats{
		Connected: in.Health() == nil, InfluxUp: in.influxUp.Load(),
		Received: in.received.Load(), Written: in.written.Load(), Points: in.points.Load(),
		Rejected: in.rejected.Load(), Skipped: in.skipped.Load(), Dropped: in.dropped.Load(),
		Acked: in.acked.Load(), AcksSent: in.acks.Load(), Queued: in.queued.Load(),
		QueueLimit: in.pace.limit.Load(), Rate: float64(in.pace.rate.Load()) / 1000,
		Requests: in.requests.Load(), WriteErrors: in.writeErrors.Load(),
		WritesInFlight: in.inFlight.Load(), MaxInFlight: in.cfg.Writes, WritesHeld: in.held.Load(),
		WriteTime: time.Duration(in.writeNanos.Load()),
	}
}

// Health reports an error while the broker connection is down.
func (in *Ingest) Health() error {
	if src := in.cfg.Source; src != nil {
		if !src.Connected() {
			return fmt.Errorf("not connected to %s", src)
		}
		return nil
	}
	if !in.connected.Load() {
		return fmt.Errorf("not connected to broker %s", in.cfg.BrokerURL)
	}
	return nil
}

// WriteMetrics writes the ingest counters in the Prometheus text format.
func (in *Ingest) WriteMetrics(w io.Writer) {
	s := in.Stats()
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	for _, m := range []struct {
		name, typ, help string
		v               any
	}{
		{"luling_cloud_broker_connected", "gauge", "1 while connected to the broker.", b2i(s.Connected)},
		{"luling_cloud_influx_up", "gauge", "0 while InfluxDB writes fail and are being retried.", b2i(s.InfluxUp)},
		{"luling_cloud_ingest_received_total", "counter", "Messages received from the broker (redeliveries included).", s.Received},
		{"luling_cloud_ingest_written_total", "counter", "Messages whose points InfluxDB acknowledged.", s.Written},
		{"luling_cloud_ingest_points_total", "counter", "Points InfluxDB acknowledged.", s.Points},
		{"luling_cloud_ingest_rejected_total", "counter", "Messages rejected (invalid, implausible sequence number, or refused by InfluxDB).", s.Rejected},
		{"luling_cloud_ingest_skipped_total", "counter", "Messages acknowledged without writing: duplicates and sequence conflicts.", s.Skipped},
		{"luling_cloud_ingest_records_dropped_total", "counter", "Records of measurements not allowed, left out of written messages.", s.Dropped},
		{"luling_cloud_ingest_acked_total", "counter", "Messages acknowledged to the broker.", s.Acked},
		{"luling_cloud_ingest_gateway_acks_total", "counter", "Acknowledgements published to gateways on their ack topics.", s.AcksSent},
		{"luling_cloud_ingest_queued", "gauge", "Messages received and not yet acknowledged.", s.Queued},
		{"luling_cloud_ingest_queue_limit", "gauge", "Messages the queue takes now: -queue-time of the write rate, at least 128 and what fills every write in flight, at most the queue's size.", s.QueueLimit},
		{"luling_cloud_ingest_rate", "gauge", "Messages written or skipped a second, over the last 10 s.", s.Rate},
		{"luling_cloud_influx_requests_total", "counter", "InfluxDB write requests, retries included.", s.Requests},
		{"luling_cloud_influx_errors_total", "counter", "InfluxDB write requests that failed and were retried.", s.WriteErrors},
		{"luling_cloud_influx_writes_in_flight", "gauge", "InfluxDB writes started and not completed.", s.WritesInFlight},
		{"luling_cloud_influx_writes_max", "gauge", "InfluxDB writes allowed in flight at once (-influx-writes).", s.MaxInFlight},
		{"luling_cloud_influx_writes_held_total", "counter", "InfluxDB writes that completed while an earlier one was in flight and waited for it before acknowledging.", s.WritesHeld},
		{"luling_cloud_influx_write_seconds_total", "counter", "Seconds spent in InfluxDB write requests, summed over concurrent ones.", s.WriteTime.Seconds()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
	in.latency.write(w)
}

// limiter allows n log lines per period per key and counts the rest.
type limiter struct {
	mu     sync.Mutex
	n      int
	period time.Duration
	state  map[string]*limitState
}

type limitState struct {
	start      time.Time
	used       int
	suppressed int
}

func newLimiter(n int, period time.Duration) *limiter {
	return &limiter{n: n, period: period, state: make(map[string]*limitState)}
}

// allow reports whether a line for key may be logged now, and how many
// were suppressed since the last one allowed.
func (l *limiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	s := l.state[key]
	if s == nil {
		s = &limitState{start: now}
		l.state[key] = s
	}
	if now.Sub(s.start) >= l.period {
		s.start, s.used = now, 0
	}
	if s.used >= l.n {
		s.suppressed++
		return false, 0
	}
	s.used++
	sup := s.suppressed
	s.suppressed = 0
	return true, sup
}
