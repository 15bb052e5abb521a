// Package command is cloudd's side of gateway commands: the operation
// platform's HTTP endpoint that sends a command to one gateway over MQTT
// and waits for its reply.
//
// # Concepts
//
// POST /api/v1/gateways/{site}/{gateway}/commands takes {name, args,
// timeout, queue, ttl, id} and publishes a command (schema v1, see
// gateway/command and docs/commands.md) at QoS 1 on
// gw/v1/{site}/{gateway}/cmd/{id}. The request waits for the reply on
// …/cmd-reply/{id} up to its timeout: 200 with the gateway's reply, 504
// when none came. A command sent without queue expires with its timeout,
// so a gateway that receives it late does not run it after the caller gave
// up.
//
// Online state comes from the fleet (the retained status topic, which every
// cloudd instance receives). A gateway the fleet knows as offline gets 409
// at once, one it has never seen 404, unless queue is true: then the
// instance that took the request keeps the command in memory (expiring
// after ttl, default 1 h) and publishes it as soon as it sees the gateway's
// birth message (it subscribes to the status topics itself). Commands stay
// non-retained, as MQTT contract v1 has them: gateways use clean sessions,
// so the broker would not keep a command for an offline gateway. The answer
// is 202 when no reply came within the timeout; the reply can be fetched
// later with GET …/commands/{id}. A queued command is lost if its cloudd
// instance stops before the gateway reconnects; sending it again with the
// same id is always safe, because the gateway runs an id at most once.
// With a Store (Config.Store; the NATS engine's bucket) queued commands
// live in the cluster instead and any instance delivers them (store.go).
//
// Several cloudd instances: every instance subscribes to
// gw/v1/+/+/cmd-reply/+ without $share/, so every instance receives every
// reply; the one whose HTTP request waits for it answers, the others only
// keep it in their cache of recent replies (which is what lets any instance
// answer GET …/commands/{id}). Replies are few next to telemetry, so the
// duplication is cheap. The reply client uses its own client id
// ({client-id}-cmd) and a clean session: a reply that arrives while no
// instance is connected is not stored by the broker, and the platform can
// send the command again with the same id to get a "duplicate" reply that
// carries the first result.
package command

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// Defaults and limits of Config and requests.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxTimeout = 2 * time.Minute
	DefaultTTL        = time.Hour
	DefaultMaxWaiting = 1024
	DefaultMaxQueued  = 1024
	DefaultCacheBytes = 8 << 20
	publishTimeout    = 10 * time.Second
)

// Topic filters of the command client: every gateway's replies, and every
// gateway's status (to publish queued commands when a gateway comes online).
const (
	ReplyFilter  = payload.TopicRoot + "/+/+/" + payload.SuffixCmdReply + "/+"
	StatusFilter = payload.TopicRoot + "/+/+/" + payload.SuffixStatus
)

// Config configures the command service.
type Config struct {
	// BrokerURL is the broker's URL, or several comma-separated (the MQTT
	// listeners of a NATS cluster), tried in order on each connection.
	BrokerURL string
	// ClientID of the reply subscriber; it must differ from the ingest
	// client's and between instances (cloudd uses "{client-id}-cmd").
	ClientID string
	Username string
	Password string
	TLS      *tls.Config
	// Gateway looks a gateway up in the fleet (fleet.Fleet.Gateway).
	Gateway func(site, gw string) (fleet.Gateway, bool)
	// Store, when set, keeps queued commands where every cloudd instance
	// reaches them (see Store) instead of in this instance's memory.
	Store Store

	DefaultTimeout time.Duration // a request's wait when it names none (10 s)
	MaxTimeout     time.Duration // longest wait a request may ask (2 min)
	DefaultTTL     time.Duration // a queued command's lifetime when it names none (1 h)
	MaxWaiting     int           // requests waiting at once (1024); more get 503
	MaxQueued      int           // queued commands kept for offline gateways (1024); more get 503
	CacheBytes     int           // recent replies kept for GET, in bytes (8 MiB)

	Logger *slog.Logger
	Now    func() time.Time // time.Now when nil
}

// waiter is one request waiting for its reply.
type waiter struct{ ch chan []byte }

// Service publishes commands and collects replies. Create it with New, run
// it with Run, serve Register's routes.
type Service struct {
	cfg Config
	log *slog.Logger

	client    atomic.Pointer[mqtt.Client]
	connected atomic.Bool

	mu      sync.Mutex
	waiting map[string]*waiter  // site/gw/id
	queued  map[string][]Queued // site/gw → commands waiting for its birth
	nqueued int
	online  map[string]bool // site/gw → online, from the status topics this client sees
	cache   replyCache

	sentN, repliesN, timeoutsN, offlineN, badRepliesN atomic.Uint64
}

// New checks cfg; it makes no network call.
func New(cfg Config) (*Service, error) {
	if cfg.BrokerURL == "" {
		return nil, errors.New("command: empty broker URL")
	}
	if cfg.ClientID == "" {
		return nil, errors.New("command: empty client id")
	}
	if cfg.Gateway == nil {
		return nil, errors.New("command: no fleet lookup (Config.Gateway)")
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{
		cfg: cfg, log: cfg.Logger,
		waiting: map[string]*waiter{}, queued: map[string][]Queued{}, online: map[string]bool{},
		cache: replyCache{max: cfg.CacheBytes, m: map[string][]byte{}},
	}, nil
}

// Connected reports whether the reply subscription is up.
func (s *Service) Connected() bool { return s.connected.Load() }

// Run connects to the broker, subscribes to ReplyFilter on every connection
// and collects replies until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	opts := mqtt.NewClientOptions().
		SetClientID(s.cfg.ClientID).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(s.onMessage).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.connected.Store(false)
			s.log.Warn("command client lost the broker", "broker", s.cfg.BrokerURL, "err", err)
		})
	for _, u := range strings.Split(s.cfg.BrokerURL, ",") { // paho fails over in order
		opts.AddBroker(strings.TrimSpace(u))
	}
	if s.cfg.Username != "" {
		opts.SetUsername(s.cfg.Username).SetPassword(s.cfg.Password)
	}
	if s.cfg.TLS != nil {
		opts.SetTLSConfig(s.cfg.TLS)
	}
	c := mqtt.NewClient(opts)
	s.client.Store(&c)
	tok := c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("command: connect to %s as %s: %w", s.cfg.BrokerURL, s.cfg.ClientID, err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	s.connected.Store(false)
	c.Disconnect(250)
	return nil
}

func (s *Service) onConnect(c mqtt.Client) {
	// Subscribing waits for the SUBACK, so it runs off paho's callback
	// goroutine.
	go func() {
		filters := map[string]byte{ReplyFilter: 1, StatusFilter: 1}
		tok := c.SubscribeMultiple(filters, nil)
		if !tok.WaitTimeout(publishTimeout) || tok.Error() != nil {
			s.log.Error("command client: subscribe failed", "filters", []string{ReplyFilter, StatusFilter}, "err", tok.Error())
			c.Disconnect(0) // auto-reconnect tries again
			return
		}
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			for f, q := range st.Result() {
				if q == 0x80 {
					s.log.Error("command client: broker refused a subscription", "filter", f)
					return
				}
			}
		}
		s.connected.Store(true)
		s.log.Info("command client connected", "broker", s.cfg.BrokerURL, "filters", []string{ReplyFilter, StatusFilter})
	}()
}

// onMessage takes a message on a cmd-reply or status topic; it runs on
// paho's callback goroutine and never waits on the network.
func (s *Service) onMessage(c mqtt.Client, m mqtt.Message) {
	t, err := payload.ParseTopic(m.Topic())
	switch {
	case err == nil && t.Suffix == payload.SuffixStatus:
		s.onStatus(c, t, m.Payload())
		return
	case err == nil && t.Suffix == payload.SuffixCmdReply:
	default:
		s.badRepliesN.Add(1)
		s.log.Warn("command client: message on an unexpected topic", "topic", m.Topic(), "err", err)
		return
	}
	body := m.Payload()
	r, err := payload.DecodeReply(body)
	if err == nil && r.ID != t.ID {
		err = fmt.Errorf("reply id %q differs from the topic's id %q", r.ID, t.ID)
	}
	if err != nil {
		s.badRepliesN.Add(1)
		s.log.Warn("malformed command reply", "topic", m.Topic(), "err", err)
		return
	}
	s.repliesN.Add(1)
	key := t.Site + "/" + t.Gateway + "/" + t.ID
	body = append([]byte(nil), body...)
	s.mu.Lock()
	s.cache.put(key, body)
	w := s.waiting[key]
	s.mu.Unlock()
	if w != nil {
		select {
		case w.ch <- body:
		default:
		}
	}
}

// onStatus publishes the commands queued for a gateway whose birth message
// arrived. The gateway subscribed to its commands before it published the
// birth, so they reach it.
func (s *Service) onStatus(c mqtt.Client, t payload.Topic, body []byte) {
	if len(body) == 0 {
		return
	}
	st, err := payload.DecodeStatus(body)
	if err != nil || st.Site != t.Site || st.Gateway != t.Gateway {
		return
	}
	gk := t.Site + "/" + t.Gateway
	now := s.cfg.Now()
	s.mu.Lock()
	s.online[gk] = st.Online
	q := s.queued[gk]
	if st.Online {
		delete(s.queued, gk)
		s.nqueued -= len(q)
	}
	s.mu.Unlock()
	if !st.Online {
		return
	}
	s.publishQueued(c, t.Site, t.Gateway, q, now)
	if s.cfg.Store != nil {
		go s.takeStored(c, t.Site, t.Gateway)
	}
}

// publishQueued publishes a gateway's queued commands that have not
// expired by now.
func (s *Service) publishQueued(c mqtt.Client, site, gw string, q []Queued, now time.Time) {
	for _, qc := range q {
		if now.After(qc.Expires) {
			s.log.Warn("queued command expired before its gateway came online; dropped", "site", site, "gateway", gw, "id", qc.ID)
			continue
		}
		tok := c.Publish(qc.Topic, 1, false, qc.Body)
		go func() {
			if !tok.WaitTimeout(publishTimeout) || tok.Error() != nil {
				s.log.Error("queued command not published; send it again with the same id", "topic", qc.Topic, "err", tok.Error())
				return
			}
			s.sentN.Add(1)
			s.log.Info("queued command sent", "topic", qc.Topic)
		}()
	}
}

// Request is the body of POST …/commands.
type Request struct {
	// ID is the command id; empty means a fresh one. Sending the same id
	// again is safe: the gateway runs it at most once.
	ID   string         `json:"id,omitempty"`
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
	// Timeout is how long to wait for the reply: a duration ("10s") or
	// seconds; default 10 s.
	Timeout Duration `json:"timeout,omitempty"`
	// Queue delivers the command to an offline gateway when it reconnects.
	Queue bool `json:"queue,omitempty"`
	// TTL is a queued command's lifetime (default 1 h, at most 24 h).
	TTL Duration `json:"ttl,omitempty"`
}

// Errors Send returns; the HTTP layer maps them to status codes.
var (
	ErrUnknownGateway = errors.New("gateway not known")
	ErrOffline        = errors.New("gateway offline")
	ErrNoBroker       = errors.New("cloudd is not connected to the broker")
	ErrTooMany        = errors.New("too many commands waiting or queued")
	ErrBusy           = errors.New("a request for this command id is already waiting")
	ErrNoReply        = errors.New("no reply in time")
	ErrBadRequest     = errors.New("bad command request")
)

// Outcome is what Send got.
type Outcome struct {
	ID      string
	Expires time.Time
	Queued  bool   // kept until the gateway comes online (it was not online)
	Reply   []byte // the gateway's reply; nil when none came in time
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrBadRequest)
}

// Send publishes a command to site/gw and waits for its reply (up to the
// request's timeout, or until ctx ends).
func (s *Service) Send(ctx context.Context, site, gw string, req Request) (Outcome, error) {
	if !payload.ValidID(site) || !payload.ValidID(gw) {
		return Outcome{}, badRequest("gateway %q/%q: want ids [a-z0-9-]{1,64}", site, gw)
	}
	if !payload.ValidCommandName(req.Name) {
		return Outcome{}, badRequest("name %q: want dotted lower-case words such as device.write", req.Name)
	}
	if len(req.Args) > payload.MaxCommandArgs {
		return Outcome{}, badRequest("%d args: want at most %d", len(req.Args), payload.MaxCommandArgs)
	}
	timeout := time.Duration(req.Timeout)
	if timeout == 0 {
		timeout = s.cfg.DefaultTimeout
	}
	if timeout < 0 || timeout > s.cfg.MaxTimeout {
		return Outcome{}, badRequest("timeout %v: want up to %v", timeout, s.cfg.MaxTimeout)
	}
	ttl := time.Duration(req.TTL)
	switch {
	case ttl != 0 && !req.Queue:
		return Outcome{}, badRequest("ttl is for queued commands: add \"queue\": true, or leave it out (the command then expires with the timeout)")
	case ttl == 0:
		ttl = s.cfg.DefaultTTL
	case ttl < 0 || ttl > payload.MaxCommandLifetime:
		return Outcome{}, badRequest("ttl %v: want up to %v", ttl, payload.MaxCommandLifetime)
	}
	id := req.ID
	if id == "" {
		id = newID()
	} else if !payload.ValidCommandID(id) {
		return Outcome{}, badRequest("id %q: want [A-Za-z0-9_-]{1,64}", req.ID)
	}
	g, known := s.cfg.Gateway(site, gw)
	queued := false
	if !known || !g.StatusKnown || !g.Online {
		if !req.Queue {
			s.offlineN.Add(1)
			if !known || !g.StatusKnown {
				return Outcome{ID: id}, fmt.Errorf("gateway %s/%s: no status seen from it: %w (send with \"queue\": true to deliver it when the gateway connects)", site, gw, ErrUnknownGateway)
			}
			since := ""
			if g.StatusTime != nil {
				since = " since " + g.StatusTime.UTC().Format(time.RFC3339)
			}
			return Outcome{ID: id}, fmt.Errorf("gateway %s/%s: %w%s (send with \"queue\": true to deliver it when the gateway reconnects)", site, gw, ErrOffline, since)
		}
		queued = true
	}
	cp := s.client.Load()
	if cp == nil || !s.connected.Load() {
		return Outcome{ID: id}, fmt.Errorf("command to %s/%s: %w", site, gw, ErrNoBroker)
	}
	now := s.cfg.Now()
	life := timeout
	if req.Queue {
		life = ttl
	}
	cmd := payload.Command{ID: id, Name: req.Name, Args: req.Args, Issued: now, Expires: now.Add(life)}
	body, err := cmd.Encode()
	if err != nil {
		return Outcome{ID: id}, badRequest("args: %v", err)
	}
	if len(body) > payload.MaxCommandBytes {
		return Outcome{ID: id}, badRequest("command of %d bytes: want at most %d", len(body), payload.MaxCommandBytes)
	}
	key := site + "/" + gw + "/" + id
	w := &waiter{ch: make(chan []byte, 1)}
	s.mu.Lock()
	switch {
	case s.waiting[key] != nil:
		s.mu.Unlock()
		return Outcome{ID: id}, fmt.Errorf("command %s to %s/%s: %w", id, site, gw, ErrBusy)
	case len(s.waiting) >= s.cfg.MaxWaiting:
		s.mu.Unlock()
		return Outcome{ID: id}, fmt.Errorf("command to %s/%s: %d waiting: %w", site, gw, len(s.waiting), ErrTooMany)
	}
	stored := queued && s.cfg.Store != nil
	if queued && !stored && s.nqueued >= s.cfg.MaxQueued {
		s.mu.Unlock()
		return Outcome{ID: id}, fmt.Errorf("command to %s/%s: %d queued: %w", site, gw, s.nqueued, ErrTooMany)
	}
	s.waiting[key] = w
	topic := payload.Base(site, gw) + "/" + payload.SuffixCmd + "/" + id
	gk := site + "/" + gw
	if queued && s.online[gk] {
		// The birth reached this client before the fleet: publish now.
		queued = false
	}
	stored = stored && queued
	if queued && !stored {
		s.queued[gk] = append(s.pruneQueued(gk, now), Queued{ID: id, Topic: topic, Body: body, Expires: cmd.Expires})
		s.nqueued++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, key)
		s.mu.Unlock()
	}()

	if stored {
		if err := s.store(ctx, *cp, site, gw, Queued{ID: id, Topic: topic, Body: body, Expires: cmd.Expires}); err != nil {
			return Outcome{ID: id}, err
		}
	}
	if queued {
		s.log.Info("command queued until the gateway comes online", "site", site, "gateway", gw, "id", id, "name", req.Name, "expires", cmd.Expires)
	} else {
		tok := (*cp).Publish(topic, 1, false, body)
		if !tok.WaitTimeout(publishTimeout) {
			return Outcome{ID: id}, fmt.Errorf("command %s: publish on %s: no PUBACK within %v: %w", id, topic, publishTimeout, ErrNoBroker)
		}
		if err := tok.Error(); err != nil {
			return Outcome{ID: id}, fmt.Errorf("command %s: publish on %s: %v: %w", id, topic, err, ErrNoBroker)
		}
		s.sentN.Add(1)
		s.log.Info("command sent", "site", site, "gateway", gw, "id", id, "name", req.Name)
	}

	out := Outcome{ID: id, Expires: cmd.Expires, Queued: queued}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case out.Reply = <-w.ch:
		return out, nil
	case <-t.C:
	case <-ctx.Done():
	}
	if !req.Queue {
		s.timeoutsN.Add(1)
	}
	return out, fmt.Errorf("command %s to %s/%s: %w within %v", id, site, gw, ErrNoReply, timeout)
}

// pruneQueued drops a gateway's expired queued commands. s.mu held.
func (s *Service) pruneQueued(gk string, now time.Time) []Queued {
	q := s.queued[gk]
	keep := q[:0]
	for _, qc := range q {
		if now.After(qc.Expires) {
			s.nqueued--
			continue
		}
		keep = append(keep, qc)
	}
	return keep
}

// Reply returns a reply this instance received recently.
func (s *Service) Reply(site, gw, id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.cache.m[site+"/"+gw+"/"+id]
	return b, ok
}

// Stats are the service's counters.
type Stats struct {
	Sent, Replies, Timeouts, Offline, BadReplies uint64
	Waiting, Queued                              int
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	n, nq := len(s.waiting), s.nqueued
	s.mu.Unlock()
	return Stats{Sent: s.sentN.Load(), Replies: s.repliesN.Load(), Timeouts: s.timeoutsN.Load(),
		Offline: s.offlineN.Load(), BadReplies: s.badRepliesN.Load(), Waiting: n, Queued: nq}
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// replyCache keeps recent replies up to a byte budget, oldest out first.
type replyCache struct {
	max   int
	size  int
	m     map[string][]byte
	order []string
}

func (c *replyCache) put(key string, body []byte) {
	if old, ok := c.m[key]; ok {
		c.size -= len(old)
	} else {
		c.order = append(c.order, key)
	}
	c.m[key] = body
	c.size += len(body)
	for c.size > c.max && len(c.order) > 0 {
		k := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.m[k])
		delete(c.m, k)
	}
	if len(c.order) > 64 && cap(c.order) > 4*len(c.order) {
		c.order = append([]string(nil), c.order...)
	}
}
