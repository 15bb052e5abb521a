package wire

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	pb "github.com/luling-edge/luling/plugins/proto"
)

func TestFrameRules(t *testing.T) {
	modbus := FrameRule{Kind: Length, Offset: 2, Size: 1, Adjust: 5}
	le := FrameRule{Kind: Length, Offset: 1, Size: 2, LittleEndian: true, Adjust: 3}
	be := FrameRule{Kind: Length, Offset: 1, Size: 2, Adjust: 3}
	delim := FrameRule{Kind: Delimiter, Delimiter: 0x03, Max: 8, Start: []byte{0x02}}
	fixed := FrameRule{Kind: Fixed, Length: 4, Start: []byte{0xAA, 0x55}}
	for _, c := range []struct {
		name   string
		r      FrameRule
		prefix []byte
		want   int
		err    string
	}{
		{"modbus needs byte count", modbus, []byte{1, 3}, 0, ""},
		{"modbus read of 4 bytes", modbus, []byte{1, 3, 4}, 9, ""},
		{"modbus count too big", FrameRule{Kind: Length, Offset: 2, Size: 1, Adjust: 5, Max: 8}, []byte{1, 3, 4}, 0, "gives 9 bytes, want 3..8"},
		{"little endian", le, []byte{9, 0x10, 0x00}, 0x13, ""},
		{"big endian", be, []byte{9, 0x00, 0x10}, 0x13, ""},
		{"big endian needs 2 bytes", be, []byte{9, 0x00}, 0, ""},
		{"delimiter pending", delim, []byte{2, 'a'}, 0, ""},
		{"delimiter found", delim, []byte{2, 'a', 3, 'x'}, 3, ""},
		{"delimiter in start ignored", FrameRule{Kind: Delimiter, Delimiter: 2, Start: []byte{2}}, []byte{2, 'a', 2}, 3, ""},
		{"delimiter missing at max", delim, []byte{2, 1, 1, 1, 1, 1, 1, 1}, 0, "no delimiter 0x03 in the first 8 bytes"},
		{"wrong start", delim, []byte{'x'}, 0, "starts 78, want 02"},
		{"fixed", fixed, []byte{0xAA}, 4, ""},
		{"fixed wrong second start byte", fixed, []byte{0xAA, 0x56}, 0, "starts aa 56, want aa 55"},
	} {
		if err := c.r.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", c.name, err)
		}
		// The rule survives the trip through its wire form.
		r, err := RuleFromProto(RuleToProto(c.r))
		if err != nil {
			t.Fatalf("%s: RuleFromProto: %v", c.name, err)
		}
		got, err := r.Func()(c.prefix)
		if c.err != "" {
			if err == nil || !errors.Is(err, ErrFrame) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: got %d, %v; want an error containing %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %d, %v; want %d", c.name, got, err, c.want)
		}
	}
	if (FrameRule{Kind: NoReply}).Func() != nil {
		t.Error("NoReply has a frame-length func")
	}
}

func TestRuleValidation(t *testing.T) {
	for _, c := range []struct {
		p    *pb.FrameRule
		want string
	}{
		{nil, "missing"},
		{&pb.FrameRule{Kind: 9}, "unknown kind 9"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_FIXED}, "fixed length 0"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_FIXED, Length: 300}, "fixed length 300 out of range 1..256"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_LENGTH, Size: 3}, "size 3"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_LENGTH, Size: 1, Offset: 256}, "offset 256"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_DELIMITER, Delimiter: 256}, "not a byte"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_DELIMITER, Max: 1 << 20}, "exceeds"},
		{&pb.FrameRule{Kind: pb.FrameRule_KIND_FIXED, Length: 1, Start: []byte{1, 2}}, "longer than the fixed length"},
	} {
		if _, err := RuleFromProto(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RuleFromProto(%v) = %v, want an error containing %q", c.p, err, c.want)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := payload.Record{
		Measurement: "parking_lot",
		Tags:        map[string]string{"lot": "north", "zone": "b"},
		Fields: map[string]payload.Value{
			"free": payload.Int(12), "ratio": payload.Float(0.25), "full": payload.Bool(false), "note": payload.String("ok"),
		},
		Time: time.Date(2026, 11, 25, 18, 0, 0, 123, time.UTC),
	}
	b, err := proto.Marshal(RecordToProto(&in))
	if err != nil {
		t.Fatal(err)
	}
	var w pb.Record
	if err := proto.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	out, err := RecordFromProto(&w)
	if err != nil {
		t.Fatal(err)
	}
	if out.Measurement != in.Measurement || !out.Time.Equal(in.Time) || len(out.Tags) != 2 || out.Tags["zone"] != "b" || len(out.Fields) != 4 {
		t.Fatalf("got %+v", out)
	}
	for k, v := range in.Fields {
		if !out.Fields[k].Equal(v) {
			t.Errorf("field %s = %v (%s), want %v (%s)", k, out.Fields[k], out.Fields[k].Type(), v, v.Type())
		}
	}
}

func TestRecordFromProtoRefuses(t *testing.T) {
	f := map[string]*pb.Value{"x": {V: &pb.Value_Int{Int: 1}}}
	for _, c := range []struct {
		r    *pb.Record
		want string
	}{
		{&pb.Record{Measurement: "", Fields: f}, `measurement "" is not a valid name`},
		{&pb.Record{Measurement: "m", Tags: map[string]string{"a b": "x"}, Fields: f}, `tag name "a b"`},
		{&pb.Record{Measurement: "m", Tags: map[string]string{"a": ""}, Fields: f}, `tag "a" has an empty`},
		{&pb.Record{Measurement: "m"}, "no fields"},
		{&pb.Record{Measurement: "m", Fields: map[string]*pb.Value{"x": {}}}, `field "x": value has no type`},
		{&pb.Record{Measurement: "m", Fields: map[string]*pb.Value{"x": {V: &pb.Value_Float{Float: math.Inf(1)}}}}, `field "x": float +Inf`},
		{&pb.Record{Measurement: "m", Fields: map[string]*pb.Value{"x": {V: &pb.Value_String_{String_: strings.Repeat("a", 5000)}}}}, "5000 bytes"},
		{&pb.Record{Measurement: "door", Fields: f}, `missing required tag "door"`},
	} {
		if _, err := RecordFromProto(c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RecordFromProto(%v) = %v, want an error containing %q", c.r, err, c.want)
		}
	}
}

func TestErrorsCrossTheBoundary(t *testing.T) {
	for _, sentinel := range []error{drivers.ErrTimeout, drivers.ErrBusDown, ErrInvalid} {
		in := errors.Join(errors.New("display 01"), sentinel)
		b, _ := proto.Marshal(ErrorToProto(in))
		var e pb.Error
		if err := proto.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		out := ErrorFromProto(&e)
		if !errors.Is(out, sentinel) || out.Error() != in.Error() {
			t.Errorf("%v came back as %v", in, out)
		}
	}
	if ErrorToProto(nil) != nil || ErrorFromProto(nil) != nil {
		t.Error("nil error not kept")
	}
}

// A plugin may send anything: decoding never panics, and a record it
// accepts converts back to the same wire form.
func FuzzRecordFromProto(f *testing.F) {
	good, _ := proto.Marshal(RecordToProto(&payload.Record{Measurement: "m", Tags: map[string]string{"t": "v"},
		Fields: map[string]payload.Value{"f": payload.Float(1.5), "s": payload.String("x")}, Time: time.Unix(1, 0)}))
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x01, 'm', 0x1a, 0x05, 0x0a, 0x01, 'x', 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var w pb.Record
		if proto.Unmarshal(b, &w) != nil {
			return
		}
		r, err := RecordFromProto(&w)
		if err != nil {
			return
		}
		for k, v := range r.Fields {
			if !v.Valid() {
				t.Fatalf("accepted invalid field %s=%v", k, v)
			}
		}
		if _, err := RecordFromProto(RecordToProto(&r)); err != nil {
			t.Fatalf("accepted record does not convert back: %v", err)
		}
	})
}

// A frame rule from a plugin never makes the arbiter panic or read past
// the limit it set.
func FuzzFrameRule(f *testing.F) {
	seed, _ := proto.Marshal(RuleToProto(FrameRule{Kind: Length, Offset: 2, Size: 1, Adjust: 5}))
	f.Add(seed, []byte{1, 3, 4})
	seed, _ = proto.Marshal(RuleToProto(FrameRule{Kind: Delimiter, Delimiter: 3, Start: []byte{2}}))
	f.Add(seed, []byte{2, 'a', 3})
	f.Fuzz(func(t *testing.T, rb, prefix []byte) {
		var w pb.FrameRule
		if proto.Unmarshal(rb, &w) != nil {
			return
		}
		r, err := RuleFromProto(&w)
		if err != nil || r.Kind == NoReply || len(prefix) == 0 {
			return
		}
		n, err := r.Func()(prefix)
		if err != nil {
			return
		}
		if n < 0 || n > r.max() {
			t.Fatalf("rule %+v gave length %d for % x (max %d)", r, n, prefix, r.max())
		}
	})
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "a", "_x.y-1", "1a", "a b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), payload.ValidName(s); got != want {
			t.Fatalf("validName(%q) = %v, payload.ValidName says %v", s, got, want)
		}
	})
}
