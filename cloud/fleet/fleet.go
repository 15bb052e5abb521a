// Package fleet is cloudd's cache of what it knows about each gateway:
// online state and devices from the retained status topic (birth message and
// Last Will), traffic counters, the per-gateway sequence check (Seq: gaps,
// loss, reorder, duplicates, conflicts, implausible jumps) and the parking occupancy derived from bay
// records (Parking). It serves that state over HTTP (/healthz,
// /api/v1/gateways, /metrics in the Prometheus text format).
//
// Everything here is a cache: it starts empty, and a restarted cloudd
// rebuilds it from the retained status messages and the traffic that
// follows. With several cloudd instances the broker must route each gateway
// to one instance (for example EMQX's shared-subscription strategy
// hash_clientid or hash_topic), otherwise each instance sees only part of a
// gateway's sequence and parking state. On the NATS engine (cloud/natsbus)
// each gateway belongs to one partition held by one instance, and its
// sequence state moves with the partition (SeqState, RestoreSeq, DropSeq);
// the new holder rebuilds its parking occupancy from the last records in
// InfluxDB (RestoreParking).
package fleet

import (
	"sort"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Rejection reasons counted per gateway.
const (
	ReasonTopic      = "topic"      // topic outside MQTT contract v1
	ReasonSchema     = "schema"     // payload.DecodeBatch failed
	ReasonIdentity   = "identity"   // topic and payload disagree on site, gateway or stream
	ReasonUnwritable = "unwritable" // line protocol cannot carry a record
	ReasonStatus     = "status"     // bad status message
	ReasonInflux     = "influx_400" // InfluxDB refused the points (4xx)
	ReasonSeqJump    = "seq_jump"   // sequence number implausibly far ahead (Seq.MaxJump)
)

// ReasonMeasurement counts records dropped from accepted messages because
// their measurement is outside the schema and not allowed by configuration.
const ReasonMeasurement = "measurement"

// Gateway is the API view of one gateway.
type Gateway struct {
	Site          string               `json:"site"`
	Gateway       string               `json:"gateway"`
	Online        bool                 `json:"online"`
	StatusKnown   bool                 `json:"status_known"`
	Version       string               `json:"version,omitempty"`
	Started       *time.Time           `json:"started,omitempty"`
	StatusTime    *time.Time           `json:"status_time,omitempty"`
	Devices       []payload.DeviceInfo `json:"devices,omitempty"`
	LastSeen      *time.Time           `json:"last_seen,omitempty"`
	Messages      uint64               `json:"messages"`
	Records       uint64               `json:"records"`
	PointsWritten uint64               `json:"points_written"`
	Seq           SeqStats             `json:"seq"`
	Rejected      map[string]uint64    `json:"rejected,omitempty"`
	// RecordsDropped counts records left out of otherwise written
	// messages, by reason (ReasonMeasurement).
	RecordsDropped map[string]uint64 `json:"records_dropped,omitempty"`
}

type gwState struct {
	view    Gateway
	seq     Seq
	parking Parking
	ack     ackState
	// inflight holds the numbers admitted for writing whose write has
	// not completed (AdmitPending, Settled).
	inflight inflight
}

// Fleet holds the state of all gateways. It is safe for concurrent use.
type Fleet struct {
	mu      sync.Mutex
	gws     map[string]*gwState
	unknown map[string]uint64 // rejections that name no valid gateway
	grace   time.Duration
	maxJump uint64 // Seq.MaxJump of every gateway
	now     func() time.Time
}

// New returns an empty fleet. Gaps still open after grace count as lost.
// now is the clock (time.Now when nil).
func New(grace time.Duration, now func() time.Time) *Fleet {
	if now == nil {
		now = time.Now
	}
	return &Fleet{gws: make(map[string]*gwState), unknown: make(map[string]uint64), grace: grace, now: now}
}

func (f *Fleet) get(site, gw string) *gwState {
	k := site + "/" + gw
	g := f.gws[k]
	if g == nil {
		g = &gwState{view: Gateway{Site: site, Gateway: gw}, seq: Seq{MaxJump: f.maxJump}}
		f.gws[k] = g
	}
	return g
}

// SetMaxJump sets how far ahead of the expected sequence number a message
// may be before it is rejected (0: DefaultMaxJump). Call it before the
// fleet is used.
func (f *Fleet) SetMaxJump(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxJump = n
	for _, g := range f.gws {
		g.seq.MaxJump = n
	}
}

// MaxJump returns the bound SetMaxJump set (DefaultMaxJump by default).
func (f *Fleet) MaxJump() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxJump == 0 {
		return DefaultMaxJump
	}
	return f.maxJump
}

// Status applies a status message (birth or Last Will).
func (f *Fleet) Status(s *payload.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(s.Site, s.Gateway)
	// No ordering by s.Time: a Last Will carries the time the gateway
	// connected, which is before its birth message's; the broker's order
	// on the one status topic is the truth.
	t := s.Time
	g.view.StatusKnown = true
	g.view.Online = s.Online
	g.view.StatusTime = &t
	if s.Online {
		g.view.Version = s.Version
		g.view.Started = s.Started
		g.view.Devices = s.Devices
		g.parking.SetCapacity(s.Devices)
	}
}

// Reject counts a rejected message. site and gw may be empty when the
// topic named no valid gateway.
func (f *Fleet) Reject(site, gw, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if site == "" || gw == "" {
		f.unknown[reason]++
		return
	}
	g := f.get(site, gw)
	if g.view.Rejected == nil {
		g.view.Rejected = make(map[string]uint64)
	}
	g.view.Rejected[reason]++
}

// DropRecords counts n records dropped from a gateway's message.
func (f *Fleet) DropRecords(site, gw, reason string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(site, gw)
	if g.view.RecordsDropped == nil {
		g.view.RecordsDropped = make(map[string]uint64)
	}
	g.view.RecordsDropped[reason] += uint64(n)
}

// Derive appends the parking_lot records that the batch's bay records
// produce. Call it once per accepted batch, in the order batches are
// written.
func (f *Fleet) Derive(dst []payload.Record, b *payload.Batch) []payload.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get(b.Site, b.Gateway).parking.Apply(dst, b.Records)
}

// Admit runs the sequence check on a batch before its points are written:
// hash is the hash of its content (see Seq.Observe). It returns what the
// number meant, whether to write the points (SeqResult.Write) and the
// number that was expected. A batch admitted for writing whose write then
// fails must be given to Unwritten.
func (f *Fleet) Admit(b *payload.Batch, hash uint64) (res SeqResult, expected uint64) {
	return f.admit(b, hash, false)
}

// AdmitPending is Admit for a writer that keeps several writes in flight:
// a number admitted for writing stays pending until Settled, and until
// then neither Acks nor SeqState counts it as written.
func (f *Fleet) AdmitPending(b *payload.Batch, hash uint64) (res SeqResult, expected uint64) {
	return f.admit(b, hash, true)
}

func (f *Fleet) admit(b *payload.Batch, hash uint64, pending bool) (res SeqResult, expected uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.get(b.Site, b.Gateway)
	expected = g.seq.next
	g.ack.dirty = true
	now := f.now()
	res = g.seq.Observe(b.Seq, hash, now)
	if pending && res.Write() {
		g.inflight.add(b.Seq, now)
	}
	return res, expected
}

// Unwritten undoes Admit's record of a batch as written.
func (f *Fleet) Unwritten(b *payload.Batch, hash uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(b.Site, b.Gateway).seq.Unwritten(b.Seq, hash)
}

// Written records a batch whose points InfluxDB acknowledged: the traffic
// counters.
func (f *Fleet) Written(b *payload.Batch, points int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	g := f.get(b.Site, b.Gateway)
	g.view.Messages++
	g.view.Records += uint64(len(b.Records))
	g.view.PointsWritten += uint64(points)
	g.view.LastSeen = &now
}

// Expire counts every gap older than the grace period as lost and returns
// the gateways and numbers declared lost in this call.
func (f *Fleet) Expire() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	var out map[string]uint64
	for k, g := range f.gws {
		if n := g.seq.Expire(now, f.grace); n > 0 {
			if out == nil {
				out = make(map[string]uint64)
			}
			out[k] = n
		}
	}
	return out
}

// Lot returns the current counts of a lot/zone of a gateway (see
// Parking.Lot).
func (f *Fleet) Lot(site, gw, lot, zone string) (capacity, occupied, unknown, free int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get(site, gw).parking.Lot(lot, zone)
}

// Gateway returns one gateway's view.
func (f *Fleet) Gateway(site, gw string) (Gateway, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gws[site+"/"+gw]
	if g == nil {
		return Gateway{}, false
	}
	return g.snapshot(), true
}

// Gateways returns all gateways sorted by site and gateway.
func (f *Fleet) Gateways() []Gateway {
	f.mu.Lock()
	out := make([]Gateway, 0, len(f.gws))
	for _, g := range f.gws {
		out = append(out, g.snapshot())
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Site != out[j].Site {
			return out[i].Site < out[j].Site
		}
		return out[i].Gateway < out[j].Gateway
	})
	return out
}

// Unknown returns the rejections that named no valid gateway, by reason.
func (f *Fleet) Unknown() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64, len(f.unknown))
	for k, v := range f.unknown {
		out[k] = v
	}
	return out
}

func (g *gwState) snapshot() Gateway {
	v := g.view
	v.Seq = g.seq.Stats()
	if g.view.Rejected != nil {
		v.Rejected = make(map[string]uint64, len(g.view.Rejected))
		for k, n := range g.view.Rejected {
			v.Rejected[k] = n
		}
	}
	if g.view.RecordsDropped != nil {
		v.RecordsDropped = make(map[string]uint64, len(g.view.RecordsDropped))
		for k, n := range g.view.RecordsDropped {
			v.RecordsDropped[k] = n
		}
	}
	v.Devices = append([]payload.DeviceInfo(nil), g.view.Devices...)
	return v
}
