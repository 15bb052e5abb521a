package wire

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/luling-edge/luling/payload"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// The direct channel's codec. Frames are the protobuf messages of
// device.proto, byte for byte (the tests check both directions against the
// generated code), but records are encoded from and decoded into
// payload.Record directly: no intermediate messages, no reflection over
// protobuf maps, and repeated names (measurements, tag and field keys,
// device ids) shared through an Interner instead of allocated per record.
// Bus transactions, rarer and made at serial-line speed, use the generated
// code for their bodies.

// Body says which message a Frame carries.
type Body uint8

// Frame bodies.
const (
	BodyNone Body = iota
	BodyPoll
	BodyPollReply
	BodyTransactRequest
	BodyTransactReply
)

var bodyNames = [...]string{"empty", "poll", "poll_reply", "transact_request", "transact_reply"}

func (b Body) String() string {
	if int(b) < len(bodyNames) {
		return bodyNames[b]
	}
	return fmt.Sprintf("body(%d)", uint8(b))
}

// Frame is a Frame of device.proto in Go form.
type Frame struct {
	Call     uint64
	Deadline int64 // Unix nanoseconds; 0: none
	Transact uint64
	Body     Body
	// PollReply: the records, the poll's error and the plugin's events.
	// Records and events decoded from the wire are not yet checked: see
	// CheckRecord.
	Records []payload.Record
	Err     *pb.Error // PollReply and TransactReply
	Events  []payload.Record
	// TransactRequest and TransactReply.
	TransactRequest *pb.TransactRequest
	TransactReply   *pb.TransactResponse
}

// Reset clears f, keeping nothing that a decoded frame could share.
func (f *Frame) Reset() { *f = Frame{} }

// Field numbers of device.proto.
const (
	frameCall        = 1
	frameDeadline    = 2
	frameTransact    = 3
	framePoll        = 4
	framePollReply   = 5
	frameTransactReq = 6
	frameTransactRep = 7
	frameEvents      = 8

	pollRecords = 1
	pollError   = 2

	recMeasurement = 1
	recTags        = 2
	recFields      = 3
	recTime        = 4

	entryKey   = 1
	entryValue = 2

	valFloat  = 1
	valInt    = 2
	valBool   = 3
	valString = 4

	errKind    = 1
	errMessage = 2
)

// AppendFrame appends f's protobuf encoding to b.
func AppendFrame(b []byte, f *Frame) ([]byte, error) {
	if f.Call != 0 {
		b = protowire.AppendTag(b, frameCall, protowire.VarintType)
		b = protowire.AppendVarint(b, f.Call)
	}
	if f.Deadline != 0 {
		b = protowire.AppendTag(b, frameDeadline, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.Deadline))
	}
	if f.Transact != 0 {
		b = protowire.AppendTag(b, frameTransact, protowire.VarintType)
		b = protowire.AppendVarint(b, f.Transact)
	}
	var err error
	switch f.Body {
	case BodyNone:
	case BodyPoll:
		b = protowire.AppendTag(b, framePoll, protowire.BytesType)
		b = append(b, 0)
	case BodyPollReply:
		start := beginNested(b, framePollReply)
		b = start.b
		for i := range f.Records {
			r := beginNested(b, pollRecords)
			b = endNested(r.with(appendRecord(r.b, &f.Records[i])))
		}
		if f.Err != nil {
			b = appendError(b, pollError, f.Err)
		}
		b = endNested(start.with(b))
	case BodyTransactRequest:
		b, err = appendMessage(b, frameTransactReq, f.TransactRequest)
	case BodyTransactReply:
		b, err = appendMessage(b, frameTransactRep, f.TransactReply)
	default:
		return b, fmt.Errorf("direct channel: encode: unknown body %d", f.Body)
	}
	if err != nil {
		return b, err
	}
	for i := range f.Events {
		r := beginNested(b, frameEvents)
		b = endNested(r.with(appendRecord(r.b, &f.Events[i])))
	}
	return b, nil
}

// nested is a length-delimited field being appended: the length goes at
// b[at], one byte reserved, moved over when the content is 128 bytes or
// more.
type nested struct {
	b  []byte
	at int
}

func beginNested(b []byte, num protowire.Number) nested {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return nested{b: append(b, 0), at: len(b)}
}

func (n nested) with(b []byte) nested { n.b = b; return n }

func endNested(n nested) []byte {
	b := n.b
	size := len(b) - n.at - 1
	if size < 0x80 {
		b[n.at] = byte(size)
		return b
	}
	k := protowire.SizeVarint(uint64(size))
	b = append(b, make([]byte, k-1)...)
	copy(b[n.at+k:], b[n.at+1:n.at+1+size])
	protowire.AppendVarint(b[n.at:n.at], uint64(size))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendRecord(b []byte, r *payload.Record) []byte {
	if r.Measurement != "" {
		b = appendString(b, recMeasurement, r.Measurement)
	}
	for k, v := range r.Tags {
		e := beginNested(b, recTags)
		b = appendString(e.b, entryKey, k)
		b = appendString(b, entryValue, v)
		b = endNested(e.with(b))
	}
	for k, v := range r.Fields {
		e := beginNested(b, recFields)
		b = appendString(e.b, entryKey, k)
		val := beginNested(b, entryValue)
		b = endNested(val.with(appendValue(val.b, v)))
		b = endNested(e.with(b))
	}
	if !r.Time.IsZero() {
		b = protowire.AppendTag(b, recTime, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.Time.UnixNano()))
	}
	return b
}

func appendValue(b []byte, v payload.Value) []byte {
	switch v.Type() {
	case payload.TypeFloat:
		b = protowire.AppendTag(b, valFloat, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.Float()))
	case payload.TypeInt:
		b = protowire.AppendTag(b, valInt, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.Int()))
	case payload.TypeBool:
		b = protowire.AppendTag(b, valBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.Bool()))
	case payload.TypeString:
		b = appendString(b, valString, v.Str())
	}
	return b
}

func appendError(b []byte, num protowire.Number, e *pb.Error) []byte {
	n := beginNested(b, num)
	b = n.b
	if e.Kind != 0 {
		b = protowire.AppendTag(b, errKind, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Kind))
	}
	if e.Message != "" {
		b = appendString(b, errMessage, e.Message)
	}
	return endNested(n.with(b))
}

func appendMessage(b []byte, num protowire.Number, m proto.Message) ([]byte, error) {
	n := beginNested(b, num)
	b, err := proto.MarshalOptions{}.MarshalAppend(n.b, m)
	if err != nil {
		return b, fmt.Errorf("direct channel: encode: %w", err)
	}
	return endNested(n.with(b)), nil
}

// errWire marks bytes that are not the protocol.
var errWire = errors.New("malformed protobuf")

func wireErr(what string, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: %w: %w", what, errWire, protowire.ParseError(n))
	}
	return fmt.Errorf("%s: %w", what, errWire)
}

// DecodeFrame decodes b into f, which it resets first. Strings come
// through in (which may be nil). Unknown fields are skipped, as protobuf
// does; a known field of the wrong wire type, a second body, a string that
// is not UTF-8 or bytes cut short are errors that wrap ErrDirectFrame.
func DecodeFrame(b []byte, f *Frame, in *Interner) error {
	f.Reset()
	if err := decodeFrame(b, f, in); err != nil {
		return fmt.Errorf("direct channel: %w: %w", err, ErrDirectFrame)
	}
	return nil
}

func decodeFrame(b []byte, f *Frame, in *Interner) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr("frame: tag", n)
		}
		b = b[n:]
		var err error
		switch {
		case num == frameCall && typ == protowire.VarintType:
			f.Call, n = protowire.ConsumeVarint(b)
		case num == frameDeadline && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			f.Deadline = int64(v)
		case num == frameTransact && typ == protowire.VarintType:
			f.Transact, n = protowire.ConsumeVarint(b)
		case num >= framePoll && num <= frameTransactRep && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n < 0 {
				return wireErr("frame: body", n)
			}
			if f.Body != BodyNone {
				return fmt.Errorf("frame: a second body (%s after %s)", Body(num-framePoll+1), f.Body)
			}
			f.Body = Body(num - framePoll + 1)
			err = decodeBody(m, f, in)
		case num == frameEvents && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n < 0 {
				return wireErr("frame: event", n)
			}
			f.Events = append(f.Events, payload.Record{})
			err = decodeRecord(m, &f.Events[len(f.Events)-1], in)
			if err != nil {
				err = fmt.Errorf("event %d: %w", len(f.Events)-1, err)
			}
		case num <= frameEvents:
			return fmt.Errorf("frame: field %d has wire type %d", num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return wireErr(fmt.Sprintf("frame: field %d", num), n)
		}
		b = b[n:]
	}
	return nil
}

func decodeBody(b []byte, f *Frame, in *Interner) error {
	switch f.Body {
	case BodyPoll:
		return skipAll(b, "poll")
	case BodyTransactRequest:
		f.TransactRequest = &pb.TransactRequest{}
		if err := proto.Unmarshal(b, f.TransactRequest); err != nil {
			return fmt.Errorf("transact_request: %w", err)
		}
		return nil
	case BodyTransactReply:
		f.TransactReply = &pb.TransactResponse{}
		if err := proto.Unmarshal(b, f.TransactReply); err != nil {
			return fmt.Errorf("transact_reply: %w", err)
		}
		return nil
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr("poll_reply: tag", n)
		}
		b = b[n:]
		switch {
		case (num == pollRecords || num == pollError) && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n < 0 {
				return wireErr("poll_reply: field", n)
			}
			if num == pollError {
				if f.Err == nil {
					f.Err = &pb.Error{}
				}
				if err := decodeError(m, f.Err); err != nil {
					return err
				}
				break
			}
			f.Records = append(f.Records, payload.Record{})
			if err := decodeRecord(m, &f.Records[len(f.Records)-1], in); err != nil {
				return fmt.Errorf("poll_reply: record %d: %w", len(f.Records)-1, err)
			}
		case num == pollRecords || num == pollError:
			return fmt.Errorf("poll_reply: field %d has wire type %d", num, typ)
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return wireErr("poll_reply: field", n)
			}
		}
		b = b[n:]
	}
	return nil
}

// skipAll checks that b holds well-formed fields, none of them known.
func skipAll(b []byte, what string) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr(what+": tag", n)
		}
		b = b[n:]
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return wireErr(what+": field", n)
		}
		b = b[n:]
	}
	return nil
}

func decodeError(b []byte, e *pb.Error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr("error: tag", n)
		}
		b = b[n:]
		switch {
		case num == errKind && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			e.Kind = pb.Error_Kind(int32(v))
		case num == errMessage && typ == protowire.BytesType:
			var s []byte
			if s, n = protowire.ConsumeBytes(b); n >= 0 {
				if !utf8.Valid(s) {
					return errors.New("error: message is not valid UTF-8")
				}
				e.Message = string(s)
			}
		case num == errKind || num == errMessage:
			return fmt.Errorf("error: field %d has wire type %d", num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return wireErr("error: field", n)
		}
		b = b[n:]
	}
	return nil
}

func decodeRecord(b []byte, r *payload.Record, in *Interner) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr("record: tag", n)
		}
		b = b[n:]
		switch {
		case num == recMeasurement && typ == protowire.BytesType:
			var s []byte
			if s, n = protowire.ConsumeBytes(b); n >= 0 {
				if !utf8.Valid(s) {
					return errors.New("measurement is not valid UTF-8")
				}
				r.Measurement = in.String(s)
			}
		case (num == recTags || num == recFields) && typ == protowire.BytesType:
			var m []byte
			if m, n = protowire.ConsumeBytes(b); n < 0 {
				break
			}
			if num == recTags {
				k, v, err := decodeTag(m, in)
				if err != nil {
					return err
				}
				if r.Tags == nil {
					r.Tags = make(map[string]string, 4)
				}
				r.Tags[k] = v
				break
			}
			k, v, err := decodeField(m, in)
			if err != nil {
				return err
			}
			if r.Fields == nil {
				r.Fields = make(map[string]payload.Value, 4)
			}
			r.Fields[k] = v
		case num == recTime && typ == protowire.VarintType:
			var v uint64
			if v, n = protowire.ConsumeVarint(b); n >= 0 {
				r.Time = time.Time{}
				if v != 0 {
					r.Time = time.Unix(0, int64(v)).UTC()
				}
			}
		case num <= recTime && num >= recMeasurement:
			return fmt.Errorf("record: field %d has wire type %d", num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return wireErr("record: field", n)
		}
		b = b[n:]
	}
	return nil
}

// decodeEntry reads a map entry: its key, and its value field's bytes
// (varint fields have no bytes; maps here have string or message values).
func decodeEntry(b []byte, what string) (key, val []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, wireErr(what+": tag", n)
		}
		b = b[n:]
		switch {
		case (num == entryKey || num == entryValue) && typ == protowire.BytesType:
			var s []byte
			if s, n = protowire.ConsumeBytes(b); n < 0 {
				return nil, nil, wireErr(what, n)
			}
			if num == entryKey {
				key = s
			} else {
				val = s
			}
		case num == entryKey || num == entryValue:
			return nil, nil, fmt.Errorf("%s: field %d has wire type %d", what, num, typ)
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, nil, wireErr(what, n)
			}
		}
		b = b[n:]
	}
	return key, val, nil
}

func decodeTag(b []byte, in *Interner) (string, string, error) {
	k, v, err := decodeEntry(b, "tag")
	if err != nil {
		return "", "", err
	}
	if !utf8.Valid(k) || !utf8.Valid(v) {
		return "", "", fmt.Errorf("tag %q is not valid UTF-8", k)
	}
	return in.String(k), in.String(v), nil
}

func decodeField(b []byte, in *Interner) (string, payload.Value, error) {
	k, m, err := decodeEntry(b, "field")
	if err != nil {
		return "", payload.Value{}, err
	}
	if !utf8.Valid(k) {
		return "", payload.Value{}, fmt.Errorf("field %q: name is not valid UTF-8", k)
	}
	key := in.String(k)
	var v payload.Value // no oneof set: no type, refused by CheckRecord
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		if n < 0 {
			return "", v, wireErr("value: tag", n)
		}
		m = m[n:]
		switch {
		case num == valFloat && typ == protowire.Fixed64Type:
			var u uint64
			u, n = protowire.ConsumeFixed64(m)
			v = payload.Float(math.Float64frombits(u))
		case num == valInt && typ == protowire.VarintType:
			var u uint64
			u, n = protowire.ConsumeVarint(m)
			v = payload.Int(int64(u))
		case num == valBool && typ == protowire.VarintType:
			var u uint64
			u, n = protowire.ConsumeVarint(m)
			v = payload.Bool(protowire.DecodeBool(u))
		case num == valString && typ == protowire.BytesType:
			var s []byte
			if s, n = protowire.ConsumeBytes(m); n >= 0 {
				if !utf8.Valid(s) {
					return "", v, fmt.Errorf("field %q: string is not valid UTF-8", key)
				}
				v = payload.String(in.String(s))
			}
		case num >= valFloat && num <= valString:
			return "", v, fmt.Errorf("field %q: value field %d has wire type %d", key, num, typ)
		default:
			n = protowire.ConsumeFieldValue(num, typ, m)
		}
		if n < 0 {
			return "", v, wireErr("value", n)
		}
		m = m[n:]
	}
	return key, v, nil
}

// Interner shares the strings that recur in a plugin's records. It keeps
// at most maxInterned strings of at most maxInternLen bytes; others are
// allocated each time. Not safe for concurrent use; nil allocates always.
type Interner struct {
	m map[string]string
}

const (
	maxInterned  = 4096
	maxInternLen = 64
)

// String returns b as a string, shared with earlier calls when it can be.
func (in *Interner) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil || len(b) > maxInternLen {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string, 64)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// CheckRecord checks a record that came from the other side: names must
// be valid measurement, tag and field names, there must be at least one
// field, values must have a type, floats must be finite, counts and
// lengths stay within the payload limits and contract measurements follow
// the InfluxDB schema.
func CheckRecord(r *payload.Record) error {
	if !validName(r.Measurement) {
		return fmt.Errorf("measurement %q is not a valid name", r.Measurement)
	}
	if len(r.Tags) > payload.MaxTags {
		return fmt.Errorf("%s: %d tags, at most %d allowed", r.Measurement, len(r.Tags), payload.MaxTags)
	}
	for k, v := range r.Tags {
		if !validName(k) {
			return fmt.Errorf("%s: tag name %q is not a valid name", r.Measurement, k)
		}
		if v == "" || len(v) > payload.MaxStringLen {
			return fmt.Errorf("%s: tag %q has an empty or over-long value", r.Measurement, k)
		}
	}
	if len(r.Fields) == 0 {
		return fmt.Errorf("%s: no fields (want at least one)", r.Measurement)
	}
	if len(r.Fields) > payload.MaxFields {
		return fmt.Errorf("%s: %d fields, at most %d allowed", r.Measurement, len(r.Fields), payload.MaxFields)
	}
	for k, v := range r.Fields {
		if !validName(k) {
			return fmt.Errorf("%s: field name %q is not a valid name", r.Measurement, k)
		}
		if err := checkValue(v); err != nil {
			return fmt.Errorf("%s: field %q: %w", r.Measurement, k, err)
		}
	}
	return payload.CheckSchema(r)
}

func checkValue(v payload.Value) error {
	switch v.Type() {
	case payload.TypeFloat:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("float %v cannot be stored", f)
		}
	case payload.TypeInt, payload.TypeBool:
	case payload.TypeString:
		if len(v.Str()) > payload.MaxStringLen {
			return fmt.Errorf("string of %d bytes, at most %d allowed", len(v.Str()), payload.MaxStringLen)
		}
	default:
		return errors.New("value has no type (want float, int, bool or string)")
	}
	return nil
}
