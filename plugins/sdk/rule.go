package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// Rule is a rule plugin's implementation: a site's own logic, declared in
// the gateway config's rules: list with a trigger that selects what it
// sees. The gateway calls Evaluate with the selected records, one call at a
// time, and carries out the actions it returns (emit a reading or an event,
// raise an alert, write a device's point) exactly as for its built-in
// rules, also while the uplink is down.
type Rule interface {
	// Describe says what the rule is. It is called before Configure.
	Describe() RuleDescription
	// Configure validates the rule's config and keeps what it needs. An
	// error wrapping ErrInvalid says the config is wrong.
	Configure(ctx context.Context, env RuleEnv) error
	// Evaluate decides what to do about the records in in. It keeps
	// whatever state it needs between calls; after the plugin restarts,
	// the first call has Resumed set and carries the last record of every
	// series the rule has seen, so that state can be rebuilt.
	Evaluate(ctx context.Context, in Input) ([]Action, error)
}

// RuleDescription is what Rule.Describe returns.
type RuleDescription struct {
	Name        string // the rule type, e.g. "zone-guidance"
	Description string // one line for logs and the status page
	Version     string // the plugin's own version
}

// RuleEnv is what Rule.Configure gets.
type RuleEnv struct {
	Name   string          // the rule's name in the gateway config
	Config json.RawMessage // the rule's plugin config (a JSON object); decode with DecodeConfig
	Logger *slog.Logger    // goes to the gateway's log with the rule as an attribute
}

// Input is one call of Evaluate.
type Input struct {
	// Records the rule's trigger selected since the last call, oldest
	// first, with the gateway's observation times.
	Records []payload.Record
	Now     time.Time // the gateway's clock
	Tick    bool      // a scheduled call (trigger every:): no records
	// Resumed: the plugin (re)started and Records are the last record of
	// every series the rule has seen, to rebuild state from.
	Resumed bool
}

// ActionKind says what an Action does.
type ActionKind uint8

// Action kinds.
const (
	ActionEmit  ActionKind = iota + 1 // Record goes to telemetry
	ActionEvent                       // Record goes to events (never dropped)
	ActionAlert                       // an alert record (Severity, Message, Device)
	ActionWrite                       // write Value to Device's Point
)

// Action is one thing Evaluate asks the gateway to do. Build one with
// Emit, EmitEvent, Alert or Write.
type Action struct {
	Kind     ActionKind
	Record   payload.Record // Emit, EmitEvent: no time means the call's Now
	Severity string         // Alert: info, warning or critical
	Message  string         // Alert
	Device   string         // Alert (optional), Write
	Point    string         // Write
	Value    payload.Value  // Write
}

// Emit is the action that puts a reading into telemetry. The gateway adds
// the tag rule (the rule's name) when the record has none.
func Emit(r payload.Record) Action { return Action{Kind: ActionEmit, Record: r} }

// EmitEvent is the action that puts a record into events.
func EmitEvent(r payload.Record) Action { return Action{Kind: ActionEvent, Record: r} }

// Alert is the action that raises an alert (measurement alert, tags rule,
// severity and device), as a built-in rule's alert action does.
func Alert(severity, message, device string) Action {
	return Action{Kind: ActionAlert, Severity: severity, Message: message, Device: device}
}

// Write is the action that writes v to a device's writable point.
func Write(device, point string, v payload.Value) Action {
	return Action{Kind: ActionWrite, Device: device, Point: point, Value: v}
}

// ServeRule runs r as a rule plugin, as Serve runs a device driver.
func ServeRule(r Rule) { serve(RulePluginSets(r)) }

// RulePluginSets returns the go-plugin plugin sets that serve r (see
// PluginSets).
func RulePluginSets(r Rule) map[int]plugin.PluginSet {
	return wire.RulePluginSets(&wire.RulePlugin{Impl: func(b *plugin.GRPCBroker) pb.RuleServer {
		return &ruleServer{r: r, broker: b}
	}})
}

// ruleServer adapts a Rule to the Rule gRPC service.
type ruleServer struct {
	pb.UnimplementedRuleServer
	r      Rule
	broker *plugin.GRPCBroker

	mu         sync.Mutex // one Evaluate at a time; guards the rest
	conn       *grpc.ClientConn
	configured bool
}

func (s *ruleServer) DescribeRule(context.Context, *pb.DescribeRuleRequest) (resp *pb.DescribeRuleResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, fmt.Errorf("%s", panicked("describe", r).Message)
		}
	}()
	d := s.r.Describe()
	return &pb.DescribeRuleResponse{Name: d.Name, Description: d.Description, Version: d.Version}, nil
}

func (s *ruleServer) ConfigureRule(ctx context.Context, req *pb.ConfigureRuleRequest) (resp *pb.ConfigureRuleResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = &pb.ConfigureRuleResponse{Error: panicked("configure", r)}, nil
		}
	}()
	conn, err := s.broker.DialWithOptions(req.BrokerId, wire.DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("configure: dial the gateway's services (broker id %d): %w", req.BrokerId, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn, s.configured = conn, false
	env := RuleEnv{Name: req.Rule, Config: req.ConfigJson, Logger: newLogger(pb.NewLogClient(conn))}
	if len(env.Config) == 0 {
		env.Config = []byte("{}")
	}
	if err := s.r.Configure(ctx, env); err != nil {
		return &pb.ConfigureRuleResponse{Error: wire.ErrorToProto(err)}, nil
	}
	s.configured = true
	return &pb.ConfigureRuleResponse{}, nil
}

func (s *ruleServer) Evaluate(ctx context.Context, req *pb.EvaluateRequest) (resp *pb.EvaluateResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = &pb.EvaluateResponse{Error: panicked("evaluate", r)}, nil
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return &pb.EvaluateResponse{Error: &pb.Error{Kind: pb.Error_KIND_INVALID, Message: "rule plugin is not configured"}}, nil
	}
	in := Input{Now: time.Unix(0, req.NowUnixNano).UTC(), Tick: req.Tick, Resumed: req.Resumed}
	in.Records = make([]payload.Record, 0, len(req.Records))
	for i, r := range req.Records {
		rec, err := wire.RecordFromProto(r)
		if err != nil {
			return &pb.EvaluateResponse{Error: &pb.Error{Kind: pb.Error_KIND_INVALID, Message: fmt.Sprintf("evaluate: record %d from the gateway: %v", i, err)}}, nil
		}
		in.Records = append(in.Records, rec)
	}
	acts, err := s.r.Evaluate(ctx, in)
	resp = &pb.EvaluateResponse{Error: wire.ErrorToProto(err)}
	for i, a := range acts {
		pa, err := actionToProto(&a)
		if err != nil {
			return &pb.EvaluateResponse{Error: &pb.Error{Kind: pb.Error_KIND_INVALID, Message: fmt.Sprintf("evaluate: action %d: %v", i, err)}}, nil
		}
		resp.Actions = append(resp.Actions, pa)
	}
	return resp, nil
}

func actionToProto(a *Action) (*pb.Action, error) {
	switch a.Kind {
	case ActionEmit, ActionEvent:
		if err := wire.CheckUTF8(&a.Record); err != nil {
			return nil, err
		}
		r := wire.RecordToProto(&a.Record)
		if a.Kind == ActionEmit {
			return &pb.Action{Kind: &pb.Action_Emit{Emit: r}}, nil
		}
		return &pb.Action{Kind: &pb.Action_Event{Event: r}}, nil
	case ActionAlert:
		return &pb.Action{Kind: &pb.Action_Alert{Alert: &pb.Alert{Severity: a.Severity, Message: a.Message, Device: a.Device}}}, nil
	case ActionWrite:
		if !a.Value.Valid() {
			return nil, fmt.Errorf("write %s.%s: the value has no type", a.Device, a.Point)
		}
		return &pb.Action{Kind: &pb.Action_Write{Write: &pb.WritePoint{Device: a.Device, Point: a.Point, Value: wire.ValueToProto(a.Value)}}}, nil
	}
	return nil, fmt.Errorf("unknown action kind %d (build actions with Emit, EmitEvent, Alert or Write)", a.Kind)
}
