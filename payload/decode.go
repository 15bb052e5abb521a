package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Limits on what a decoder accepts. They protect the cloud from a gateway
// (or anyone with its credentials) that sends something absurd.
const (
	MaxRecords    = 10000
	MaxTags       = 32
	MaxFields     = 64
	MaxNameLen    = 128
	MaxStringLen  = 4096
	MaxBodyBytes  = 8 << 20
	maxFutureSkew = 24 * time.Hour
)

// ValidName reports whether s is a valid measurement, tag or field name:
// [A-Za-z_][A-Za-z0-9_.-]{0,127}. It is checked for every name of every
// record the outbox takes, so it compares bytes rather than run a regexp
// (which took a quarter of the outbox's CPU).
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ErrSchema wraps every error that means the payload does not follow the
// version 1 schema.
var ErrSchema = errors.New("payload does not follow schema v1")

type schemaError struct{ msg string }

func (e *schemaError) Error() string { return e.msg }
func (e *schemaError) Unwrap() error { return ErrSchema }

func schemaErr(format string, args ...any) error {
	return &schemaError{msg: fmt.Sprintf(format, args...)}
}

type wireBatch struct {
	V       *int            `json:"v"`
	Site    string          `json:"site"`
	Gateway string          `json:"gateway"`
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Sent    string          `json:"sent"`
	Records []wireRecord    `json:"records"`
	Extra   json.RawMessage `json:"-"`
}

type wireRecord struct {
	M      string                     `json:"m"`
	T      string                     `json:"t"`
	Tags   map[string]string          `json:"tags"`
	Fields map[string]json.RawMessage `json:"fields"`
}

// DecodeBatch parses and validates a batch body. Every error wraps ErrSchema
// and names the record and field at fault. It checks structure and types, and
// that every measurement in Schema has the contract's field types; it does
// not check identity against a topic (see CheckIdentity).
func DecodeBatch(body []byte) (*Batch, error) {
	if len(body) > MaxBodyBytes {
		return nil, schemaErr("body is %d bytes, more than the %d allowed", len(body), MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireBatch
	if err := dec.Decode(&w); err != nil {
		return nil, schemaErr("invalid JSON: %v", err)
	}
	if dec.More() {
		return nil, schemaErr("trailing data after the batch object")
	}
	if w.V == nil {
		return nil, schemaErr(`missing "v" (schema version)`)
	}
	if *w.V != Version {
		return nil, schemaErr(`unsupported schema version "v": %d (this decoder reads %d)`, *w.V, Version)
	}
	if !ValidID(w.Site) {
		return nil, schemaErr(`"site" %q: want [a-z0-9-]{1,64}`, w.Site)
	}
	if !ValidID(w.Gateway) {
		return nil, schemaErr(`"gateway" %q: want [a-z0-9-]{1,64}`, w.Gateway)
	}
	if w.Seq == 0 {
		return nil, schemaErr(`"seq" missing or 0: want a sequence number >= 1`)
	}
	kind, err := ParseKind(w.Kind)
	if err != nil {
		return nil, schemaErr(`"kind": %v`, err)
	}
	b := &Batch{Version: Version, Site: w.Site, Gateway: w.Gateway, Seq: w.Seq, Kind: kind}
	if w.Sent != "" {
		if b.Sent, err = time.Parse(time.RFC3339Nano, w.Sent); err != nil {
			return nil, schemaErr(`"sent": %v`, err)
		}
	}
	if len(w.Records) == 0 {
		return nil, schemaErr(`"records" is empty`)
	}
	if len(w.Records) > MaxRecords {
		return nil, schemaErr(`"records" has %d entries, more than the %d allowed`, len(w.Records), MaxRecords)
	}
	b.Records = make([]Record, len(w.Records))
	for i := range w.Records {
		if err := decodeRecord(&w.Records[i], &b.Records[i]); err != nil {
			return nil, schemaErr("records[%d]: %v", i, err)
		}
	}
	return b, nil
}

func decodeRecord(w *wireRecord, r *Record) error {
	if !ValidName(w.M) {
		return fmt.Errorf(`"m" %q: want a measurement name ([A-Za-z_][A-Za-z0-9_.-]*, at most %d characters)`, w.M, MaxNameLen)
	}
	r.Measurement = w.M
	if w.T == "" {
		return fmt.Errorf(`%s: missing "t" (observation time)`, w.M)
	}
	t, err := time.Parse(time.RFC3339Nano, w.T)
	if err != nil {
		return fmt.Errorf(`%s: "t": %v`, w.M, err)
	}
	if t.Year() < 2000 || t.After(time.Now().Add(maxFutureSkew)) {
		return fmt.Errorf(`%s: "t" %s is outside the accepted range (year 2000 to a day from now)`, w.M, w.T)
	}
	r.Time = t
	if len(w.Tags) > MaxTags {
		return fmt.Errorf("%s: %d tags, more than the %d allowed", w.M, len(w.Tags), MaxTags)
	}
	if len(w.Tags) > 0 {
		r.Tags = make(map[string]string, len(w.Tags))
		for k, v := range w.Tags {
			if !ValidName(k) || k == "site" || k == "gateway" {
				return fmt.Errorf("%s: tag name %q is not allowed", w.M, k)
			}
			if v == "" || len(v) > MaxStringLen {
				return fmt.Errorf("%s: tag %q: value must be 1 to %d bytes", w.M, k, MaxStringLen)
			}
			r.Tags[k] = v
		}
	}
	if len(w.Fields) == 0 {
		return fmt.Errorf(`%s: "fields" is empty`, w.M)
	}
	if len(w.Fields) > MaxFields {
		return fmt.Errorf("%s: %d fields, more than the %d allowed", w.M, len(w.Fields), MaxFields)
	}
	r.Fields = make(map[string]Value, len(w.Fields))
	for k, raw := range w.Fields {
		if !ValidName(k) {
			return fmt.Errorf("%s: field name %q is not allowed", w.M, k)
		}
		v, err := decodeValue(raw)
		if err != nil {
			return fmt.Errorf("%s: field %q: %v", w.M, k, err)
		}
		r.Fields[k] = v
	}
	return CheckSchema(r)
}

func decodeValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Value{}, errors.New("empty value")
	}
	switch raw[0] {
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return Value{}, err
		}
		return Bool(b), nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Value{}, err
		}
		if len(s) > MaxStringLen {
			return Value{}, fmt.Errorf("string of %d bytes, more than the %d allowed", len(s), MaxStringLen)
		}
		return String(s), nil
	case 'n':
		return Value{}, errors.New("null is not a value (leave the field out instead)")
	case '{', '[':
		return Value{}, errors.New("want a number, bool or string, not an object or array")
	}
	if bytes.ContainsAny(raw, ".eE") {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return Value{}, fmt.Errorf("bad float %s", raw)
		}
		return Float(f), nil
	}
	i, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return Value{}, fmt.Errorf("bad integer %s", raw)
	}
	return Int(i), nil
}

// CheckIdentity verifies that a batch received on topic belongs there: the
// topic's site, gateway and stream must match the body's.
func CheckIdentity(topic Topic, b *Batch) error {
	if topic.Site != b.Site || topic.Gateway != b.Gateway {
		return schemaErr("identity mismatch: topic is for %s/%s, payload says %s/%s", topic.Site, topic.Gateway, b.Site, b.Gateway)
	}
	if topic.Kind != b.Kind {
		return schemaErr("stream mismatch: topic %q carries %s, payload says %s", topic.Suffix, topic.Kind, b.Kind)
	}
	return nil
}
