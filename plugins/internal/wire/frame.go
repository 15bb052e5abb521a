package wire

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/luling-edge/luling/drivers"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// RuleKind says how a FrameRule finds the end of a reply.
type RuleKind uint8

// Rule kinds.
const (
	NoReply   RuleKind = iota // no reply expected (a broadcast)
	Fixed                     // every reply is Length bytes
	Length                    // a length field at Offset (Size bytes) plus Adjust is the total length
	Delimiter                 // the reply ends with the byte Delimiter
)

// DefaultMax is the longest reply a rule accepts when Max is 0.
const DefaultMax = 256

// maxFrame caps Max and Length: the bus arbiter refuses longer frames.
const maxFrame = 1 << 16

// FrameRule is a declarative frame-length rule: the part of a device
// protocol the host's bus arbiter needs to know where a reply ends. It
// crosses the process boundary where a Go func cannot.
type FrameRule struct {
	Kind         RuleKind
	Length       int  // Fixed: the reply length
	Offset       int  // Length: where the length field starts
	Size         int  // Length: the field's size, 1 or 2 bytes
	LittleEndian bool // Length: byte order of a 2-byte field
	Adjust       int  // Length: total length = field value + Adjust
	Delimiter    byte // Delimiter: the last byte of a reply
	Max          int  // longest acceptable reply; 0 means DefaultMax
	Start        []byte
}

func (r FrameRule) max() int {
	if r.Max == 0 {
		return DefaultMax
	}
	return r.Max
}

// Validate reports a rule that cannot work.
func (r FrameRule) Validate() error {
	if r.Max < 0 || r.Max > maxFrame {
		return fmt.Errorf("frame rule: max %d out of range 0..%d", r.Max, maxFrame)
	}
	if len(r.Start) > r.max() {
		return fmt.Errorf("frame rule: start of %d bytes is longer than max %d", len(r.Start), r.max())
	}
	switch r.Kind {
	case NoReply, Delimiter:
	case Fixed:
		if r.Length < 1 || r.Length > r.max() {
			return fmt.Errorf("frame rule: fixed length %d out of range 1..%d", r.Length, r.max())
		}
		if len(r.Start) > r.Length {
			return fmt.Errorf("frame rule: start of %d bytes is longer than the fixed length %d", len(r.Start), r.Length)
		}
	case Length:
		if r.Size != 1 && r.Size != 2 {
			return fmt.Errorf("frame rule: length field size %d (want 1 or 2)", r.Size)
		}
		if r.Offset < 0 || r.Offset+r.Size > r.max() {
			return fmt.Errorf("frame rule: length field at offset %d does not fit in max %d", r.Offset, r.max())
		}
		if r.Adjust < -maxFrame || r.Adjust > maxFrame {
			return fmt.Errorf("frame rule: adjust %d out of range ±%d", r.Adjust, maxFrame)
		}
	default:
		return fmt.Errorf("frame rule: unknown kind %d", r.Kind)
	}
	return nil
}

// ErrFrame marks a reply that its frame rule cannot accept.
var ErrFrame = errors.New("reply does not match the frame rule")

// Func returns the drivers.FrameLenFunc that applies the rule, or nil for
// NoReply. The rule must be valid.
func (r FrameRule) Func() drivers.FrameLenFunc {
	if r.Kind == NoReply {
		return nil
	}
	return r.frameLen
}

func (r FrameRule) frameLen(p []byte) (int, error) {
	n := min(len(p), len(r.Start))
	if !bytes.Equal(p[:n], r.Start[:n]) {
		return 0, fmt.Errorf("%w: starts % x, want % x", ErrFrame, p[:n], r.Start[:n])
	}
	max := r.max()
	switch r.Kind {
	case Fixed:
		return r.Length, nil
	case Length:
		end := r.Offset + r.Size
		if len(p) < end {
			return 0, nil
		}
		v := int(p[r.Offset])
		if r.Size == 2 {
			if r.LittleEndian {
				v = int(p[r.Offset]) | int(p[r.Offset+1])<<8
			} else {
				v = int(p[r.Offset])<<8 | int(p[r.Offset+1])
			}
		}
		total := v + r.Adjust
		if total < end || total > max {
			return 0, fmt.Errorf("%w: length field %d gives %d bytes, want %d..%d", ErrFrame, v, total, end, max)
		}
		return total, nil
	case Delimiter:
		if i := bytes.IndexByte(p[n:min(len(p), max)], r.Delimiter); i >= 0 {
			return n + i + 1, nil
		}
		if len(p) >= max {
			return 0, fmt.Errorf("%w: no delimiter %#02x in the first %d bytes", ErrFrame, r.Delimiter, max)
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%w: rule kind %d expects no reply", ErrFrame, r.Kind)
}

// RuleToProto converts a rule.
func RuleToProto(r FrameRule) *pb.FrameRule {
	return &pb.FrameRule{
		Kind:         pb.FrameRule_Kind(r.Kind),
		Length:       uint32(r.Length),
		Offset:       uint32(r.Offset),
		Size:         uint32(r.Size),
		LittleEndian: r.LittleEndian,
		Adjust:       int32(r.Adjust),
		Delimiter:    uint32(r.Delimiter),
		Max:          uint32(r.Max),
		Start:        r.Start,
	}
}

// RuleFromProto converts and validates a rule from the other side.
func RuleFromProto(p *pb.FrameRule) (FrameRule, error) {
	if p == nil {
		return FrameRule{}, errors.New("frame rule: missing")
	}
	if p.Delimiter > 0xff {
		return FrameRule{}, fmt.Errorf("frame rule: delimiter %d is not a byte", p.Delimiter)
	}
	if p.Length > maxFrame || p.Offset > maxFrame || p.Size > maxFrame || p.Max > maxFrame {
		return FrameRule{}, fmt.Errorf("frame rule: a length or offset exceeds %d", maxFrame)
	}
	r := FrameRule{
		Kind:         RuleKind(p.Kind),
		Length:       int(p.Length),
		Offset:       int(p.Offset),
		Size:         int(p.Size),
		LittleEndian: p.LittleEndian,
		Adjust:       int(p.Adjust),
		Delimiter:    byte(p.Delimiter),
		Max:          int(p.Max),
		Start:        p.Start,
	}
	if p.Kind < 0 || p.Kind > pb.FrameRule_KIND_DELIMITER {
		return r, fmt.Errorf("frame rule: unknown kind %d", p.Kind)
	}
	return r, r.Validate()
}
