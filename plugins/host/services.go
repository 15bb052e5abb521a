package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// busServer serves a device's drivers.Transactor to its plugin.
type busServer struct {
	pb.UnimplementedBusServer
	name string
	tx   drivers.Transactor
	p    *Plugin
}

// maxRequest caps a request a plugin may put on the wire.
const maxRequest = 4096

func (s *busServer) Transact(ctx context.Context, req *pb.TransactRequest) (*pb.TransactResponse, error) {
	s.p.stats.transactions.Add(1)
	fail := func(err error) (*pb.TransactResponse, error) {
		s.p.stats.busErrors.Add(1)
		return &pb.TransactResponse{Error: wire.ErrorToProto(err)}, nil
	}
	if s.tx == nil {
		return fail(fmt.Errorf("plugin %s: device has no serial bus: %w", s.name, drivers.ErrBusDown))
	}
	if len(req.Request) == 0 || len(req.Request) > maxRequest {
		return fail(fmt.Errorf("plugin %s: request of %d bytes (want 1..%d): %w", s.name, len(req.Request), maxRequest, wire.ErrInvalid))
	}
	rule, err := wire.RuleFromProto(req.Rule)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w: %w", s.name, err, wire.ErrInvalid))
	}
	reply, err := s.tx.Transact(ctx, req.Request, rule.Func())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, drivers.ErrTimeout) {
			err = fmt.Errorf("%w: %w", drivers.ErrTimeout, err)
		}
		return fail(err)
	}
	return &pb.TransactResponse{Reply: reply}, nil
}

// logServer writes a plugin's log records into the gateway's log.
type logServer struct {
	pb.UnimplementedLogServer
	log *slog.Logger
}

// maxLogAttrs caps the attributes of one record from a plugin.
const maxLogAttrs = 64

func (s *logServer) Log(ctx context.Context, req *pb.LogRequest) (*pb.LogResponse, error) {
	level := slog.LevelInfo
	switch req.Level {
	case pb.LogRequest_LEVEL_DEBUG:
		level = slog.LevelDebug
	case pb.LogRequest_LEVEL_WARN:
		level = slog.LevelWarn
	case pb.LogRequest_LEVEL_ERROR:
		level = slog.LevelError
	}
	attrs := req.Attrs
	if len(attrs) > 2*maxLogAttrs {
		attrs = attrs[:2*maxLogAttrs]
	}
	args := make([]any, 0, len(attrs)/2)
	for i := 0; i+1 < len(attrs); i += 2 {
		args = append(args, slog.String(attrs[i], attrs[i+1]))
	}
	s.log.Log(context.WithoutCancel(ctx), level, req.Message, args...)
	return &pb.LogResponse{}, nil
}
