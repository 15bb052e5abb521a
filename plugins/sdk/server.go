package sdk

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

type pbDeviceServer = pb.DeviceServer

// server adapts a Driver to the Device gRPC service.
type server struct {
	pb.UnimplementedDeviceServer
	d      Driver
	broker *plugin.GRPCBroker

	mu         sync.Mutex
	conn       *grpc.ClientConn // to the host's Bus and Log services
	configured bool
	ln         net.Listener // the direct channel's, nil when not offered
	// unsent holds events taken from the driver whose reply never reached
	// the gateway (a poll cut at its deadline); the next reply carries
	// them first.
	unsent []payload.Record
}

func newServer(d Driver, b *plugin.GRPCBroker) *server { return &server{d: d, broker: b} }

// panicked turns a recovered driver panic into an error value, so that one
// bad poll does not end the process; the stack goes to stderr, which the
// gateway logs.
func panicked(op string, r any) *pb.Error {
	fmt.Fprintf(os.Stderr, "%s: driver panicked: %v\n%s", op, r, debug.Stack())
	return &pb.Error{Message: fmt.Sprintf("%s: driver panicked: %v", op, r)}
}

func (s *server) Describe(context.Context, *pb.DescribeRequest) (resp *pb.DescribeResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, fmt.Errorf("%s", panicked("describe", r).Message)
		}
	}()
	d := s.d.Describe()
	resp = &pb.DescribeResponse{Name: d.Name, Description: d.Description, Measurement: d.Measurement, Version: d.Version}
	for _, p := range d.Points {
		resp.Points = append(resp.Points, &pb.Point{Name: p.Name, Type: pb.Point_Type(p.Type), Description: p.Description})
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (resp *pb.ConfigureResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = &pb.ConfigureResponse{Error: panicked("configure", r)}, nil
		}
	}()
	conn, err := s.broker.DialWithOptions(req.BrokerId, wire.DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("configure: dial the gateway's services (broker id %d): %w", req.BrokerId, err)
	}
	s.mu.Lock()
	old := s.conn
	s.conn, s.configured = conn, false
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	spec := req.GetSpec()
	env := Env{
		Spec:   Spec{ID: spec.GetId(), Unit: int(spec.GetUnit()), Profile: spec.GetProfile(), Tags: spec.GetTags()},
		Config: req.ConfigJson,
		Logger: newLogger(pb.NewLogClient(conn)),
	}
	if len(env.Config) == 0 {
		env.Config = []byte("{}")
	}
	if req.HasBus {
		env.Bus = &remoteBus{c: pb.NewBusClient(conn)}
	}
	if err := s.d.Configure(ctx, env); err != nil {
		return &pb.ConfigureResponse{Error: wire.ErrorToProto(err)}, nil
	}
	resp = &pb.ConfigureResponse{}
	if req.DirectDir != "" {
		path, err := s.listenDirect(req.DirectDir)
		if err != nil {
			// The gateway then polls over gRPC; slower, but it works.
			env.Logger.Warn("direct channel not available; polls go over gRPC", "dir", req.DirectDir, "err", err.Error())
		}
		resp.DirectSocket = path
	}
	s.mu.Lock()
	s.configured = true
	s.mu.Unlock()
	return resp, nil
}

func (s *server) ready() *pb.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return &pb.Error{Kind: pb.Error_KIND_INVALID, Message: "plugin is not configured"}
	}
	return nil
}

func (s *server) Poll(ctx context.Context, _ *pb.PollRequest) (*pb.PollResponse, error) {
	recs, e := s.poll(ctx)
	return &pb.PollResponse{Records: wire.RecordsToProto(recs), Error: e}, nil
}

// poll runs the driver's Poll: its records, and its error in wire form.
func (s *server) poll(ctx context.Context) (recs []payload.Record, e *pb.Error) {
	defer func() {
		if r := recover(); r != nil {
			recs, e = nil, panicked("poll", r)
		}
	}()
	if e := s.ready(); e != nil {
		return nil, e
	}
	recs, err := s.d.Poll(ctx)
	if e := checkRecords("poll", recs); e != nil {
		return nil, e
	}
	return recs, wire.ErrorToProto(err)
}

func (s *server) TakeEvents(context.Context, *pb.TakeEventsRequest) (*pb.TakeEventsResponse, error) {
	return &pb.TakeEventsResponse{Events: wire.RecordsToProto(s.takeEvents())}, nil
}

// takeEvents returns the driver's events. A panic or records the protocol
// cannot carry lose this batch, reported on stderr.
func (s *server) takeEvents() (out []payload.Record) {
	defer func() {
		if r := recover(); r != nil {
			panicked("take events", r)
			out = nil
		}
	}()
	if s.ready() != nil {
		return nil
	}
	s.mu.Lock()
	out, s.unsent = s.unsent, nil
	s.mu.Unlock()
	evs := s.d.TakeEvents()
	if e := checkRecords("take events", evs); e != nil {
		fmt.Fprintln(os.Stderr, e.Message)
		return out
	}
	return append(out, evs...)
}

// maxUnsent bounds the events kept for the next reply.
const maxUnsent = 4096

// keepUnsent keeps events whose reply could not be sent for the next one.
func (s *server) keepUnsent(evs []payload.Record) {
	if len(evs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	room := maxUnsent - len(s.unsent)
	if len(evs) > room {
		fmt.Fprintf(os.Stderr, "luling plugin: %d events dropped: the gateway has not taken events for too long\n", len(evs)-room)
		evs = evs[:max(room, 0)]
	}
	s.unsent = append(s.unsent, evs...)
}

// checkRecords refuses records the protocol cannot carry (strings that are
// not UTF-8), naming the record.
func checkRecords(op string, recs []payload.Record) *pb.Error {
	for i := range recs {
		if err := wire.CheckUTF8(&recs[i]); err != nil {
			return &pb.Error{Message: fmt.Sprintf("%s: record %d: %v", op, i, err)}
		}
	}
	return nil
}

func (s *server) Write(ctx context.Context, req *pb.WriteRequest) (resp *pb.WriteResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = &pb.WriteResponse{Error: panicked("write", r)}, nil
		}
	}()
	if e := s.ready(); e != nil {
		return &pb.WriteResponse{Error: e}, nil
	}
	v, err := wire.ValueFromProto(req.Value)
	if err != nil {
		return &pb.WriteResponse{Error: &pb.Error{Kind: pb.Error_KIND_INVALID, Message: fmt.Sprintf("write %s: %v", req.Point, err)}}, nil
	}
	return &pb.WriteResponse{Error: wire.ErrorToProto(s.d.Write(ctx, req.Point, v))}, nil
}
