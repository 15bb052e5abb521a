package sdk

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// Bus is the device's handle on its serial bus. Each Transact writes one
// request and reads one reply through the gateway's bus arbiter, which
// serializes the transactions of every device on the line.
//
// Pass Poll's context, or one derived from it: the transaction then goes on
// the poll's own connection to the gateway (the direct channel), one round
// trip between the processes. With any other context, or after Poll has
// returned, it goes over gRPC, which works the same and costs more.
type Bus interface {
	// Transact writes req and returns the reply whose end rule finds (nil
	// for NoReply). Errors wrap ErrTimeout when no complete reply came
	// before the bus timeout or ctx's deadline, ErrBusDown when the port
	// is not open.
	Transact(ctx context.Context, req []byte, rule FrameRule) ([]byte, error)
}

// FrameRule tells the gateway's bus arbiter where a reply ends. Build one
// with FixedLength, LengthByte, LengthField, Delimited or NoReply, then set
// Start (bytes every reply begins with) or Max (the longest reply, default
// 256) when the protocol has them.
type FrameRule = wire.FrameRule

// FixedLength is the rule for replies of n bytes.
func FixedLength(n int) FrameRule { return FrameRule{Kind: wire.Fixed, Length: n} }

// LengthByte is the rule for replies whose byte at offset plus adjust is the
// total length. Modbus RTU reads: LengthByte(2, 5) (address, function,
// byte count, data, two CRC bytes).
func LengthByte(offset, adjust int) FrameRule {
	return FrameRule{Kind: wire.Length, Offset: offset, Size: 1, Adjust: adjust}
}

// LengthField is LengthByte for a 1- or 2-byte length field.
func LengthField(offset, size int, littleEndian bool, adjust int) FrameRule {
	return FrameRule{Kind: wire.Length, Offset: offset, Size: size, LittleEndian: littleEndian, Adjust: adjust}
}

// Delimited is the rule for replies that end with delim, at most max bytes
// long (0: 256).
func Delimited(delim byte, max int) FrameRule {
	return FrameRule{Kind: wire.Delimiter, Delimiter: delim, Max: max}
}

// NoReply is the rule for requests that get no reply (broadcasts).
func NoReply() FrameRule { return FrameRule{Kind: wire.NoReply} }

// remoteBus is the Bus over the host's Bus service.
type remoteBus struct{ c pb.BusClient }

func (b *remoteBus) Transact(ctx context.Context, req []byte, rule FrameRule) ([]byte, error) {
	if err := rule.Validate(); err != nil {
		return nil, fmt.Errorf("bus: %w: %w", err, ErrInvalid)
	}
	preq := &pb.TransactRequest{Request: req, Rule: wire.RuleToProto(rule)}
	if dp, ok := ctx.Value(directKey{}).(*directPoll); ok {
		resp, used, err := dp.transact(ctx, preq)
		if used {
			if err != nil {
				return nil, err
			}
			if resp.Error != nil {
				return nil, fmt.Errorf("bus: %w", wire.ErrorFromProto(resp.Error))
			}
			return resp.Reply, nil
		}
	}
	resp, err := b.c.Transact(ctx, preq)
	if err != nil {
		switch status.Code(err) {
		case codes.DeadlineExceeded:
			return nil, fmt.Errorf("bus: %w: %w", drivers.ErrTimeout, err)
		case codes.Unavailable:
			return nil, fmt.Errorf("bus: gateway unreachable: %w: %w", drivers.ErrBusDown, err)
		}
		return nil, fmt.Errorf("bus: %w", err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("bus: %w", wire.ErrorFromProto(resp.Error))
	}
	return resp.Reply, nil
}
