package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Topic suffixes of end-to-end delivery (MQTT contract v1).
const (
	// SuffixAck carries an Ack from the cloud to one gateway (QoS 1, not
	// retained).
	SuffixAck = "ack"
	// SuffixDropped carries a Dropped announcement from a gateway to the
	// cloud (QoS 1, not retained).
	SuffixDropped = "dropped"
)

// Limits of the delivery messages' decoders.
const (
	MaxResendRanges = 64
	MaxLosses       = 1024
	maxDeliveryBody = 256 << 10
)

// AckTopic returns gw/v1/{site}/{gateway}/ack.
func AckTopic(site, gateway string) string { return Base(site, gateway) + "/" + SuffixAck }

// DroppedTopic returns gw/v1/{site}/{gateway}/dropped.
func DroppedTopic(site, gateway string) string { return Base(site, gateway) + "/" + SuffixDropped }

// SeqRange is the sequence numbers First..Last, both included.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Len is the number of sequence numbers in r.
func (r SeqRange) Len() uint64 { return r.Last - r.First + 1 }

func (r SeqRange) String() string { return fmt.Sprintf("%d..%d", r.First, r.Last) }

// MergeRanges adds rs to q, a list of ascending, disjoint ranges, and
// returns it ascending and disjoint again, with overlapping and adjacent
// ranges merged. It reuses q's array.
func MergeRanges(q, rs []SeqRange) []SeqRange {
	q = append(q, rs...)
	for i := 1; i < len(q); i++ { // insertion sort: lists are short
		for j := i; j > 0 && q[j].First < q[j-1].First; j-- {
			q[j], q[j-1] = q[j-1], q[j]
		}
	}
	out := q[:0]
	for _, r := range q {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// LossReason says why a gateway gave up sequence numbers.
type LossReason string

// The reasons a gateway declares.
const (
	// LossFull: the outbox dropped its oldest telemetry to stay within its
	// bound.
	LossFull LossReason = "full"
	// LossCorrupt: the stored message failed its checksum.
	LossCorrupt LossReason = "corrupt"
	// LossMissing: the outbox had assigned (or reserved) these numbers and
	// did not find them on disk when it opened: never used before a crash,
	// or lost with a truncated, damaged or deleted segment.
	LossMissing LossReason = "missing"
	// LossUnused: a failed write skipped these numbers; nothing with them
	// was stored or sent.
	LossUnused LossReason = "unused"
)

// Valid reports whether r is one of the declared reasons.
func (r LossReason) Valid() bool {
	switch r {
	case LossFull, LossCorrupt, LossMissing, LossUnused:
		return true
	}
	return false
}

// Loss is a range of sequence numbers a gateway will never send again.
// Numbers in it that the cloud already has were delivered; the others are
// a declared loss.
type Loss struct {
	SeqRange
	Reason LossReason `json:"reason"`
}

// Ack is what the cloud publishes on a gateway's ack topic: every message
// with seq <= Through was written to the store or declared lost, so the
// gateway may delete it; Resend asks for ranges of a gap the cloud saw.
type Ack struct {
	V       int        `json:"v"`
	Site    string     `json:"site"`
	Gateway string     `json:"gateway"`
	Through uint64     `json:"through"`
	Resend  []SeqRange `json:"resend,omitempty"`
	Sent    time.Time  `json:"sent"`
}

// Dropped is what a gateway publishes on its dropped topic: ranges it will
// never send, with the reason.
type Dropped struct {
	V       int       `json:"v"`
	Site    string    `json:"site"`
	Gateway string    `json:"gateway"`
	Losses  []Loss    `json:"losses"`
	Sent    time.Time `json:"sent"`
}

// EncodeAck returns the JSON encoding of a (with V set to Version).
func EncodeAck(a *Ack) []byte {
	a.V = Version
	return mustMarshal(a)
}

// EncodeDropped returns the JSON encoding of d (with V set to Version).
func EncodeDropped(d *Dropped) []byte {
	d.V = Version
	return mustMarshal(d)
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only plain types: cannot happen
		panic(err)
	}
	return b
}

// strictUnmarshal decodes exactly one JSON object into v, refusing unknown
// keys and trailing data.
func strictUnmarshal(what string, body []byte, v any) error {
	if len(body) > maxDeliveryBody {
		return schemaErr("%s: body is %d bytes, more than the %d allowed", what, len(body), maxDeliveryBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return schemaErr("%s: invalid JSON: %v", what, err)
	}
	if dec.More() {
		return schemaErr("%s: data after the JSON object", what)
	}
	return nil
}

func checkHeader(what string, v int, site, gateway string, sent time.Time) error {
	if v != Version {
		return schemaErr(`%s: unsupported schema version "v": %d (want %d)`, what, v, Version)
	}
	if !ValidID(site) || !ValidID(gateway) {
		return schemaErr("%s: bad identity %q/%q: want [a-z0-9-]{1,64}", what, site, gateway)
	}
	if sent.IsZero() {
		return schemaErr(`%s: "sent" missing`, what)
	}
	return nil
}

// checkRanges checks that rs are well formed, ascending and disjoint.
func checkRanges(what string, i int, r SeqRange, prev uint64) error {
	if r.First == 0 || r.Last < r.First {
		return schemaErr("%s[%d]: range %d..%d: want 1 <= first <= last", what, i, r.First, r.Last)
	}
	if i > 0 && r.First <= prev {
		return schemaErr("%s[%d]: range %d..%d: want ranges ascending and disjoint (previous ends at %d)", what, i, r.First, r.Last, prev)
	}
	return nil
}

// DecodeAck parses and checks an ack body.
func DecodeAck(body []byte) (*Ack, error) {
	var a Ack
	if err := strictUnmarshal("ack", body, &a); err != nil {
		return nil, err
	}
	if err := checkHeader("ack", a.V, a.Site, a.Gateway, a.Sent); err != nil {
		return nil, err
	}
	if len(a.Resend) > MaxResendRanges {
		return nil, schemaErr("ack: %d resend ranges, more than the %d allowed", len(a.Resend), MaxResendRanges)
	}
	var prev uint64
	for i, r := range a.Resend {
		if err := checkRanges("ack: resend", i, r, prev); err != nil {
			return nil, err
		}
		if r.First <= a.Through {
			return nil, schemaErr("ack: resend[%d]: range %d..%d starts at or below through %d", i, r.First, r.Last, a.Through)
		}
		prev = r.Last
	}
	return &a, nil
}

// DecodeDropped parses and checks a dropped announcement.
func DecodeDropped(body []byte) (*Dropped, error) {
	var d Dropped
	if err := strictUnmarshal("dropped", body, &d); err != nil {
		return nil, err
	}
	if err := checkHeader("dropped", d.V, d.Site, d.Gateway, d.Sent); err != nil {
		return nil, err
	}
	if len(d.Losses) == 0 || len(d.Losses) > MaxLosses {
		return nil, schemaErr("dropped: %d losses, want 1 to %d", len(d.Losses), MaxLosses)
	}
	var prev uint64
	for i, l := range d.Losses {
		if err := checkRanges("dropped: losses", i, l.SeqRange, prev); err != nil {
			return nil, err
		}
		if !l.Reason.Valid() {
			return nil, schemaErr("dropped: losses[%d]: reason %q: want full, corrupt, missing or unused", i, l.Reason)
		}
		prev = l.Last
	}
	return &d, nil
}
