package citysim

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/payload"
)

// City is a running set of simulated gateways. Create it with New, run it
// with Run; Totals and Report may be called at any time from any goroutine.
type City struct {
	cfg     Config
	gws     []*gateway
	tr      *traffic
	started time.Time

	quiet     atomic.Bool // no new traffic; acknowledgements and resends go on
	messages  atomic.Uint64
	records   atomic.Uint64
	published atomic.Uint64
	lateTicks atomic.Uint64
	maxLag    atomic.Int64
	byMeas    sync.Map // measurement → *atomic.Uint64
}

// New checks the configuration and prepares the gateways; it makes no
// network call.
func New(cfg Config) (*City, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &City{cfg: cfg, tr: newTraffic(&cfg)}
	for i := 0; i < cfg.Gateways; i++ {
		g := &gateway{site: cfg.Site, id: cfg.id(i), occupied: make([]bool, cfg.Devices), confirmWait: cfg.ConfirmWait}
		g.topics = [3]string{payload.TopicFor(g.site, g.id, payload.Telemetry), payload.TopicFor(g.site, g.id, payload.Event), payload.StatusTopic(g.site, g.id)}
		g.ackTopic = payload.AckTopic(g.site, g.id)
		c.gws = append(c.gws, g)
	}
	return c, nil
}

// StopTraffic stops new observations. The gateways stay connected, keep
// what cloudd has not confirmed and answer its resend requests, so a test
// can wait until everything sent was confirmed (Totals().Unconfirmed == 0).
func (c *City) StopTraffic() { c.quiet.Store(true) }

func (c *City) status(g *gateway, online bool, started time.Time) []byte {
	s := payload.Status{Site: g.site, Gateway: g.id, Online: online, Time: time.Now()}
	if online {
		s.Version = c.cfg.Version
		s.Started = &started
		s.Devices = devices(c.cfg.Devices)
	}
	return payload.EncodeStatus(&s)
}

func (c *City) client(i int, g *gateway) mqtt.Client {
	cfg := &c.cfg
	started := time.Now()
	o := mqtt.NewClientOptions().
		AddBroker(cfg.Brokers[i%len(cfg.Brokers)]).
		SetClientID(cfg.ClientPrefix+"-"+g.id).
		SetCleanSession(true).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10*time.Second).
		SetBinaryWill(g.topics[2], c.status(g, false, started), 1, true).
		SetConnectionLostHandler(func(mqtt.Client, error) {
			g.mu.Lock()
			g.online = false
			g.mu.Unlock()
		}).
		SetOnConnectHandler(func(cl mqtt.Client) {
			// paho runs this on a goroutine of its own: waiting is fine.
			cl.Publish(g.topics[2], 1, true, c.status(g, true, started))
			tok := cl.Subscribe(g.ackTopic, 1, func(_ mqtt.Client, m mqtt.Message) { g.onAck(m.Payload(), time.Now()) })
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				// Without acknowledgements everything stays held (Unconfirmed).
				cfg.Logger.Warn("citysim: subscribe to the ack topic failed", "gateway", g.id, "err", tok.Error())
			}
			g.mu.Lock()
			g.online, g.replay = true, true
			g.mu.Unlock()
		})
	return mqtt.NewClient(o)
}

// Run connects every gateway, publishes their traffic until ctx ends, then
// publishes each gateway's offline status and disconnects. Connections are
// retried until they succeed; when ctx ends before every gateway connected
// once, Run says how many never did.
func (c *City) Run(ctx context.Context) error {
	c.started = time.Now()
	sem := make(chan struct{}, c.cfg.ConnectParallel)
	var wg sync.WaitGroup
	var never atomic.Int64
	for i, g := range c.gws {
		g.client = c.client(i, g)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tok := g.client.Connect()
			select {
			case <-tok.Done():
			case <-ctx.Done():
				never.Add(1)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		c.cfg.Logger.Info("citysim: gateways connecting", "gateways", len(c.gws), "took", time.Since(c.started).Round(time.Millisecond))
		c.schedule(ctx)
	}
	for _, g := range c.gws {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if g.client.IsConnectionOpen() {
				g.client.Publish(g.topics[2], 1, true, c.status(g, false, c.started)).WaitTimeout(2 * time.Second)
			}
			g.client.Disconnect(250)
		}()
	}
	wg.Wait()
	if n := never.Load(); n > 0 {
		return fmt.Errorf("citysim: %d of %d gateways never connected to %s", n, len(c.gws), strings.Join(c.cfg.Brokers, ", "))
	}
	return nil
}

// schedule is the one goroutine that seals and publishes for every gateway.
func (c *City) schedule(ctx context.Context) {
	period := c.cfg.BatchEvery
	tick := time.NewTicker(period)
	defer tick.Stop()
	last := time.Now()
	next := last.Add(period)
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if lag := now.Sub(next); lag > period/2 {
			c.lateTicks.Add(1)
			if int64(lag) > c.maxLag.Load() {
				c.maxLag.Store(int64(lag))
			}
		}
		next = now.Add(period)
		quiet := c.quiet.Load()
		for _, g := range c.gws {
			var tele, events []payload.Record
			if !quiet {
				tele, events = c.tr.observe(g, last, now)
			}
			buf = c.tick(g, now, tele, events, buf)
		}
		last = now
	}
}

// tick seals a gateway's records into messages and publishes what is due:
// requested and replayed messages first, then the new ones.
func (c *City) tick(g *gateway, now time.Time, tele, events []payload.Record, buf []byte) []byte {
	var fresh []held
	for _, part := range []struct {
		kind payload.Kind
		recs []payload.Record
	}{{payload.Telemetry, tele}, {payload.Event, events}} {
		if len(part.recs) == 0 {
			continue
		}
		seq := g.seq + 1 // only this goroutine writes g.seq
		b := payload.Batch{Site: g.site, Gateway: g.id, Seq: seq, Kind: part.kind, Sent: now, Records: part.recs}
		var err error
		buf, err = payload.AppendBatch(buf[:0], &b)
		if err != nil { // the simulator's own records: report, send nothing, keep the number
			c.cfg.Logger.Error("citysim: cannot encode a batch; not sent", "gateway", g.id, "kind", part.kind, "err", err)
			continue
		}
		g.mu.Lock()
		g.seq = seq
		g.mu.Unlock()
		fresh = append(fresh, held{seq: seq, kind: part.kind, records: len(part.recs), body: append([]byte(nil), buf...)})
		c.messages.Add(1)
		c.records.Add(uint64(len(part.recs)))
		for i := range part.recs {
			c.count(part.recs[i].Measurement)
		}
	}
	g.mu.Lock()
	online := g.online
	if !online { // everything goes out on the next connection (replay)
		g.held = append(g.held, fresh...)
		g.mu.Unlock()
		return buf
	}
	again := g.due(now)
	g.held = append(g.held, fresh...)
	if len(fresh) > 0 {
		g.published = fresh[len(fresh)-1].seq
		if g.advancedAt.IsZero() {
			g.advancedAt = now
		}
	}
	g.resent += uint64(len(again))
	g.mu.Unlock()
	for _, h := range again {
		g.client.Publish(g.topicFor(h.kind), 1, false, h.body)
	}
	for _, h := range fresh {
		g.client.Publish(g.topicFor(h.kind), 1, false, h.body)
	}
	c.published.Add(uint64(len(again) + len(fresh)))
	return buf
}

func (c *City) count(m string) {
	v, ok := c.byMeas.Load(m)
	if !ok {
		v, _ = c.byMeas.LoadOrStore(m, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// Totals are the simulator's counters.
type Totals struct {
	Gateways    int    `json:"gateways"`
	Online      int    `json:"online"`
	Messages    uint64 `json:"messages"`    // sealed (each sequence number once)
	Records     uint64 `json:"records"`     // in sealed messages
	Published   uint64 `json:"published"`   // publishes, repeats included
	Resent      uint64 `json:"resent"`      // published again: resend requests, reconnects, stalls
	Acks        uint64 `json:"acks"`        // acknowledgements received
	BadAcks     uint64 `json:"bad_acks"`    // ignored as malformed or for another gateway
	Stalls      uint64 `json:"stalls"`      // unconfirmed tails published again after ConfirmWait
	Unconfirmed uint64 `json:"unconfirmed"` // messages held, not yet confirmed by cloudd
	LateTicks   uint64 `json:"late_ticks"`  // scheduler periods started more than half a period late
	MaxLagMS    int64  `json:"max_lag_ms"`
}

// Totals sums the counters of every gateway.
func (c *City) Totals() Totals {
	t := Totals{
		Gateways: len(c.gws), Messages: c.messages.Load(), Records: c.records.Load(), Published: c.published.Load(),
		LateTicks: c.lateTicks.Load(), MaxLagMS: time.Duration(c.maxLag.Load()).Milliseconds(),
	}
	for _, g := range c.gws {
		g.mu.Lock()
		if g.online {
			t.Online++
		}
		t.Resent += g.resent
		t.Acks += g.acks
		t.BadAcks += g.badAcks
		t.Stalls += g.stalls
		t.Unconfirmed += uint64(len(g.held))
		g.mu.Unlock()
	}
	return t
}

// GatewayReport is what one gateway sent.
type GatewayReport struct {
	Site        string `json:"site"`
	Gateway     string `json:"gateway"`
	LastSeq     uint64 `json:"last_seq"`
	Through     uint64 `json:"through"` // highest seq cloudd confirmed
	Unconfirmed int    `json:"unconfirmed"`
}

// Report is what the simulator sent, for comparison with InfluxDB.
type Report struct {
	Totals
	Devices       int               `json:"devices"`
	Seconds       float64           `json:"seconds"`
	ByMeasurement map[string]uint64 `json:"by_measurement"` // records sealed, by measurement
	PerGateway    []GatewayReport   `json:"per_gateway"`
}

// Report returns the totals, the records by measurement and each gateway's
// last sequence number.
func (c *City) Report() Report {
	r := Report{Totals: c.Totals(), Devices: c.cfg.Devices, ByMeasurement: map[string]uint64{}}
	if !c.started.IsZero() {
		r.Seconds = time.Since(c.started).Seconds()
	}
	c.byMeas.Range(func(k, v any) bool {
		r.ByMeasurement[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	for _, g := range c.gws {
		g.mu.Lock()
		r.PerGateway = append(r.PerGateway, GatewayReport{Site: g.site, Gateway: g.id, LastSeq: g.seq, Through: g.through, Unconfirmed: len(g.held)})
		g.mu.Unlock()
	}
	sort.Slice(r.PerGateway, func(i, j int) bool { return r.PerGateway[i].Gateway < r.PerGateway[j].Gateway })
	return r
}
