package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// subject is the attribute and tag that names what the plugin is for.
func (p *Plugin) subject() string {
	if p.rule {
		return "rule"
	}
	return "device"
}

// startRule dispenses, describes and configures a rule plugin.
func (p *Plugin) startRule(ctx context.Context, s *session) error {
	raw, err := s.conn.Protocol.Dispense(wire.RulePluginName)
	if err != nil {
		return fmt.Errorf("plugin %s: dispense %q: %w", p.opts.Name, wire.RulePluginName, err)
	}
	rc, isClient := raw.(*wire.RuleClient)
	if !isClient {
		return fmt.Errorf("plugin %s: dispensed %T, want a gRPC rule client", p.opts.Name, raw)
	}
	s.rule = rc.Rule
	id := p.serveHost(s, rc.Broker, false)
	d, err := s.rule.DescribeRule(ctx, &pb.DescribeRuleRequest{})
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("plugin %s: %s serves no rule (is it a device plugin?): %w", p.opts.Name, p.opts.Path, ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("plugin %s: describe: %w", p.opts.Name, err)
	}
	cr, err := s.rule.ConfigureRule(ctx, &pb.ConfigureRuleRequest{Rule: p.opts.Name, ConfigJson: p.cfgJSON, BrokerId: id})
	if err != nil {
		return fmt.Errorf("plugin %s: configure: %w", p.opts.Name, err)
	}
	if cr.Error != nil {
		return fmt.Errorf("plugin %s: configure: %w", p.opts.Name, wire.ErrorFromProto(cr.Error))
	}
	p.mu.Lock()
	p.desc = Description{Name: d.Name, Description: d.Description, Version: d.Version}
	p.mu.Unlock()
	return nil
}

// RulePlugin is a rule whose decisions a plugin program makes: it
// implements rules.PluginRule. It shares a device plugin's life cycle
// (checksum, start on demand, restart with back-off, calls cut at their
// deadline, fault events) and adds one thing: it remembers the last record
// of every series it passed on, and after the plugin (re)started it sends
// them again (Input.Resumed), so that the plugin can rebuild its state.
type RulePlugin struct {
	p *Plugin

	callMu sync.Mutex // one Evaluate at a time; guards fed
	fed    *session   // the session that has the state

	mu     sync.Mutex // guards the rest; held briefly (Report must not wait for a call)
	last   map[string]payload.Record
	lost   uint64 // series not remembered over maxRuleSeries
	warned bool
}

var _ rules.PluginRule = (*RulePlugin)(nil)

// maxRuleSeries bounds the series a rule plugin's host remembers.
const maxRuleSeries = 10000

// NewRule checks the options and returns the rule plugin. Options.Name is
// the rule's name; Bus must be nil. It starts nothing: the process starts
// at the first Evaluate.
func NewRule(opts Options) (*RulePlugin, error) {
	if opts.Bus != nil {
		return nil, fmt.Errorf("plugin %s: a rule has no bus", opts.Name)
	}
	p, err := newPlugin(opts, true)
	if err != nil {
		return nil, err
	}
	return &RulePlugin{p: p, last: map[string]payload.Record{}}, nil
}

// Evaluate passes records to the plugin and returns the actions it asked
// for. Actions that are not valid (a record that breaks the InfluxDB
// contract, an unknown severity, a write without device) are dropped,
// counted and logged; the first such problem is returned with the good
// actions.
func (r *RulePlugin) Evaluate(ctx context.Context, in rules.PluginInput) ([]rules.PluginAction, error) {
	r.callMu.Lock()
	defer r.callMu.Unlock()
	r.remember(in.Records)
	var resp *pb.EvaluateResponse
	err := r.p.call(ctx, "evaluate", func(ctx context.Context, deadline time.Time, s *session) (err error) {
		req := &pb.EvaluateRequest{NowUnixNano: in.Now.UnixNano(), Tick: in.Tick}
		if s != r.fed {
			req.Resumed, req.Tick = true, false
			req.Records = r.replay()
		} else {
			req.Records = wire.RecordsToProto(in.Records)
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if resp, err = s.rule.Evaluate(ctx, req); err == nil {
			r.fed = s
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrCrashed) || errors.Is(err, ErrBackoff) || errors.Is(err, ErrCallTimeout) || r.p.Stats().State != Running {
			err = fmt.Errorf("%w: %w", rules.ErrPluginDown, err)
		}
		return nil, err
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("plugin %s: evaluate: %w", r.p.opts.Name, wire.ErrorFromProto(resp.Error))
	}
	out := make([]rules.PluginAction, 0, len(resp.Actions))
	var first error
	for i, a := range resp.Actions {
		act, err := actionFromProto(a)
		if err != nil {
			err = r.p.reject("evaluate", i, err)
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, act)
	}
	return out, first
}

// remember keeps the last record of every series.
func (r *RulePlugin) remember(recs []payload.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var key strings.Builder
	for i := range recs {
		key.Reset()
		rules.SeriesKey(&key, &recs[i], nil)
		k := key.String()
		if _, ok := r.last[k]; !ok && len(r.last) >= maxRuleSeries {
			r.lost++
			if !r.warned {
				r.warned = true
				r.p.log.Warn("rule plugin: too many series to remember; a restarted plugin will not see them all again",
					"max", maxRuleSeries)
			}
			continue
		}
		r.last[k] = recs[i]
	}
}

// replay is every remembered record, oldest first.
func (r *RulePlugin) replay() []*pb.Record {
	r.mu.Lock()
	recs := make([]payload.Record, 0, len(r.last))
	for _, rec := range r.last {
		recs = append(recs, rec)
	}
	r.mu.Unlock()
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	return wire.RecordsToProto(recs)
}

var severities = map[string]bool{"info": true, "warning": true, "critical": true}

func actionFromProto(a *pb.Action) (rules.PluginAction, error) {
	switch k := a.GetKind().(type) {
	case *pb.Action_Emit, *pb.Action_Event:
		r := a.GetEmit()
		event := r == nil
		if event {
			r = a.GetEvent()
		}
		rec, err := wire.RecordFromProto(r)
		if err != nil {
			return rules.PluginAction{}, fmt.Errorf("emit: %w", err)
		}
		return rules.PluginAction{Kind: rules.ActEmit, Event: event, Record: rec}, nil
	case *pb.Action_Alert:
		al := k.Alert
		if !severities[al.GetSeverity()] {
			return rules.PluginAction{}, fmt.Errorf("alert: severity %q (want info, warning or critical)", al.GetSeverity())
		}
		if al.GetMessage() == "" || len(al.GetMessage()) > payload.MaxStringLen {
			return rules.PluginAction{}, errors.New("alert: empty or over-long message")
		}
		return rules.PluginAction{Kind: rules.ActAlert, Severity: al.Severity, Message: al.Message, Device: al.Device}, nil
	case *pb.Action_Write:
		w := k.Write
		if w.GetDevice() == "" || w.GetPoint() == "" {
			return rules.PluginAction{}, fmt.Errorf("write: device %q, point %q: both must be set", w.GetDevice(), w.GetPoint())
		}
		v, err := wire.ValueFromProto(w.GetValue())
		if err != nil {
			return rules.PluginAction{}, fmt.Errorf("write %s.%s: %w", w.Device, w.Point, err)
		}
		return rules.PluginAction{Kind: rules.ActWrite, Device: w.Device, Point: w.Point, Value: v}, nil
	}
	return rules.PluginAction{}, errors.New("an action of no kind known to this gateway")
}

// TakeEvents returns the plugin's fault events (crashes, hangs, refusals
// and recoveries), tagged with the rule.
func (r *RulePlugin) TakeEvents() []payload.Record {
	out, _ := r.p.takeHostEvents()
	return out
}

// Stats returns the plugin's state and counters.
func (r *RulePlugin) Stats() Stats { return r.p.Stats() }

// Report gives the plugin's state for the status page.
func (r *RulePlugin) Report() map[string]any {
	rep := r.p.Report()
	r.mu.Lock()
	rep["series"] = len(r.last)
	if r.lost > 0 {
		rep["series_not_remembered"] = r.lost
	}
	r.mu.Unlock()
	return rep
}

// Close stops the plugin process.
func (r *RulePlugin) Close() error { return r.p.Close() }

// RuleFactory is the gateway's rules.PluginFactory: it makes a RulePlugin
// for a rule's plugin: section, logging to log.
func RuleFactory(log *slog.Logger) rules.PluginFactory {
	return func(name string, d *rules.PluginDef) (rules.PluginRule, error) {
		return NewRule(Options{Name: name, Path: d.Path, SHA256: d.SHA256, Config: d.Config, CallTimeout: d.CallTimeout, Logger: log})
	}
}
