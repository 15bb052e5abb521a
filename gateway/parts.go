package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"reflect"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/gateway/status"
	"github.com/luling-edge/luling/gateway/uplink"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// This file wires the runtime's parts together and maps their counters onto
// the status snapshot.

var errBackoff = bus.ErrBackoff

func isCRC(err error) bool { return errors.Is(err, drivers.ErrCRC) }

// outboxAdapter is the outbox as the uplink's Source.
type outboxAdapter struct {
	*outbox.Outbox
	max int64
}

func openOutbox(cfg *config.Config, log *slog.Logger) (*outboxAdapter, error) {
	ob, err := outbox.Open(outbox.Options{
		Dir: cfg.Outbox.Path, Site: cfg.Site, Gateway: cfg.Gateway,
		MaxBytes: cfg.Outbox.MaxBytes, CommitInterval: cfg.Outbox.CommitInterval,
		TelemetryWindow: cfg.Outbox.TelemetryWindow,
		MaxBatchRecords: cfg.Outbox.BatchMaxRecords, Logger: log.With("part", "outbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: outbox %s: %w", cfg.Outbox.Path, err)
	}
	return &outboxAdapter{Outbox: ob, max: cfg.Outbox.MaxBytes}, nil
}

// Ack satisfies uplink.Source.
func (o *outboxAdapter) Ack(seqs ...uint64) error {
	o.Outbox.Ack(seqs...)
	return nil
}

func (o *outboxAdapter) snapshot() status.Outbox {
	s := o.Stats()
	d := s.Dropped()
	return status.Outbox{Bytes: s.Bytes, MaxBytes: o.max, Messages: s.Unacked.Messages, Records: s.Unacked.Records,
		NextSeq: s.NextSeq, AckedSeq: s.AckedThrough, DroppedMessages: d.Messages, DroppedRecords: d.Records,
		Appended: s.AppendedRecords, Fsyncs: s.Fsyncs}
}

// busEntry is one serial bus.
type busEntry struct {
	b    *bus.Bus
	port string
	util utilMeter
}

// newBus makes the bus c for devices whose drivers are drvs (the drivers
// of the devices configured on it, one entry per device).
func newBus(c config.Bus, drvs []string, log *slog.Logger, clk clock.Clock) (*busEntry, error) {
	port := serialport.Config{Name: c.Port, Baud: c.Baud, DataBits: c.DataBits,
		Parity: serialport.Parity(c.Parity), StopBits: c.StopBits}
	b, err := bus.New(bus.Config{
		Name: c.Name, Port: port,
		Timeout: c.Timeout, BackoffMax: c.BackoffMax,
		Turnaround: turnaround(c, port, drvs),
	}, bus.Options{Logger: log, Clock: clk}) // the bus attaches bus and port
	if err != nil {
		return nil, fmt.Errorf("gateway: bus %s: %w", c.Name, err)
	}
	return &busEntry{b: b, port: c.Port}, nil
}

// turnaround is the silence a bus keeps before each request: the config's
// turnaround when set, else the longest silence the protocols of the bus's
// devices need, each driver's Turnaround or, for drivers that name none,
// the Modbus RTU t3.5. A bus of OSDP readers so waits two character times,
// and a bus that carries Modbus (or a plugin) keeps t3.5. 0 (a bus without
// devices) leaves the bus its default, t3.5.
func turnaround(c config.Bus, port serialport.Config, drvs []string) time.Duration {
	if c.Turnaround > 0 {
		return c.Turnaround
	}
	var longest time.Duration
	for _, name := range drvs {
		need := bus.Silence(port.Baud, port.BitsPerChar())
		if info, ok := drivers.Lookup(name); ok && info.Turnaround != nil {
			need = info.Turnaround(port.Baud, port.BitsPerChar())
		}
		longest = max(longest, need)
	}
	return longest
}

func (be *busEntry) device(id string) drivers.Transactor { return be.b.Device(id) }

func (be *busEntry) run(ctx context.Context, log *slog.Logger) {
	if err := be.b.Run(ctx); err != nil && ctx.Err() == nil {
		log.Error("bus stopped", "bus", be.b.Name(), "err", err)
	}
	be.b.Close()
}

// waitBuses waits until every bus's port is open, for at most limit of
// real time: a port that does not open is the bus's to report.
func (g *Gateway) waitBuses(ctx context.Context, limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for _, be := range g.buses {
		select {
		case <-be.b.Ready():
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (be *busEntry) snapshot() status.Bus {
	s := be.b.Stats()
	st := "up"
	if s.State != bus.StateOpen {
		st = s.State
	}
	out := status.Bus{Name: s.Name, Port: be.port, State: st, Transactions: s.Transactions, Timeouts: s.Timeouts,
		Errors: s.Errors, Reopens: s.Reopens, BytesOut: s.BytesSent, BytesIn: s.BytesReceived,
		TurnaroundUS: float64(be.b.Silence().Nanoseconds()) / 1e3,
		// The line's busy time is wall time (the bus's line clock).
		Utilization: be.util.observe(time.Now(), s.Busy)}
	for _, d := range s.Devices {
		if d.LastError != "" {
			out.LastError = d.LastError
		}
	}
	return out
}

// uplinkAdapter owns the MQTT uplink.
type uplinkAdapter struct {
	u   *uplink.Uplink
	log *slog.Logger
}

func newUplink(cfg *config.Config, g *Gateway) (*uplinkAdapter, error) {
	uc := cfg.Uplink
	opts := uplink.Options{
		Brokers: uc.Brokers, ClientID: uc.ClientID, Username: uc.Username, Password: uc.Password.Reveal(),
		Site: cfg.Site, Gateway: cfg.Gateway, KeepAlive: uc.Keepalive, ConnectTimeout: uc.ConnectTimeout,
		ReconnectMax: uc.ReconnectMax, Window: uc.MaxInflight, Birth: g.Birth, Logger: g.log.With("part", "uplink"),
		OnCommand: g.exec.Handle, Clock: g.clock,
	}
	if uc.TLS.Set() {
		tc, err := uplink.TLSConfig(uc.TLS.CA, uc.TLS.Cert, uc.TLS.Key, uc.TLS.ServerName, uc.TLS.InsecureSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("gateway: uplink tls: %w", err)
		}
		opts.TLS = tc
	}
	u, err := uplink.New(g.ob, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: uplink: %w", err)
	}
	return &uplinkAdapter{u: u, log: g.log}, nil
}

func (a *uplinkAdapter) run(ctx context.Context) {
	if err := a.u.Run(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("uplink stopped", "err", err)
	}
}

// PrepareReload tells the gateway that Run's end is a config reload to
// next: when the uplink settings stay the same, the uplink disconnects
// without the offline status, and the next gateway's birth follows this
// one's on the status topic (see uplink.Handover). With other settings
// (another broker, site or identity) the offline status goes out as at any
// stop, so that no broker keeps a stale online status.
func (g *Gateway) PrepareReload(next *config.Config) {
	if next.Site == g.cfg.Site && next.Gateway == g.cfg.Gateway && reflect.DeepEqual(next.Uplink, g.cfg.Uplink) {
		g.up.u.Handover()
	}
}

func (a *uplinkAdapter) snapshot() status.Uplink {
	s := a.u.Stats()
	return status.Uplink{Connected: s.Connected, Broker: s.Broker, Connects: s.Connects, Losses: s.ConnectionLosses,
		Published: s.Published, Acked: s.Acked, InFlight: s.InFlight, LastError: s.LastError, LastPubAck: s.LastPuback,
		LastConnect: s.LastConnect}
}

var _ uplink.Source = (*outboxAdapter)(nil)

// newRules compiles the config's rules. Writes go to the devices by id;
// emitted records go through the gateway's outbox.
func (g *Gateway) newRules() (*rules.Engine, error) {
	devs := rules.Devices{}
	for _, d := range g.devices {
		devs[d.spec.ID] = d.drv
	}
	log := g.log.With("part", "rules")
	return compileRules(g.cfg, g.shared, rules.Options{Clock: g.clock, Logger: log, Writer: devs, Emitter: g, Commander: g, Plugins: pluginRuleFactory(log)})
}

// pluginRules makes the plugins of plugin rules; nil in a binary that
// does not link the plugin host.
var pluginRules func(*slog.Logger) rules.PluginFactory

// EnablePluginRules makes plugin rules run through f
// (plugins/host.RuleFactory). Call it from main or an init function,
// before a gateway is made; binaries that do not call it leave go-plugin
// and gRPC out of their build (see drivers/all.EnablePlugins).
func EnablePluginRules(f func(*slog.Logger) rules.PluginFactory) { pluginRules = f }

func pluginRuleFactory(log *slog.Logger) rules.PluginFactory {
	if pluginRules == nil {
		return nil
	}
	return pluginRules(log)
}

// CheckRules compiles the config's rules the way the gateway will, so that
// a rule mistake shows up when the config is validated, not when it runs.
func CheckRules(cfg *config.Config) error {
	_, err := compileRules(cfg, &drivers.Shared{}, rules.Options{Plugins: pluginRuleFactory(slog.New(slog.DiscardHandler))})
	return err
}

// compileRules compiles rules against the contract's field types and those
// the drivers give for the config's devices (a register-map profile's),
// with what the devices share (profiles read once).
func compileRules(cfg *config.Config, shared *drivers.Shared, opts rules.Options) (*rules.Engine, error) {
	defs, err := rules.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	fields := map[string]map[string]payload.ValueType{}
	env := drivers.Env{ProfilesDir: cfg.ProfilesDir, Shared: shared}
	for _, d := range cfg.Devices {
		info, ok := drivers.Lookup(d.Driver)
		if !ok || info.Fields == nil {
			continue
		}
		types, err := info.Fields(specOf(d), env)
		if err != nil {
			continue // the device itself reports it
		}
		for m, ft := range types {
			if fields[m] == nil {
				fields[m] = map[string]payload.ValueType{}
			}
			maps.Copy(fields[m], ft)
		}
	}
	opts.Fields = fields
	return rules.New(defs, opts)
}

// specOf is a configured device as its driver sees it.
func specOf(d config.Device) drivers.Spec {
	return drivers.Spec{ID: d.ID, Driver: d.Driver, Bus: d.Bus, Unit: d.Unit, Profile: d.Profile, Tags: d.Tags, Options: d.Options}
}

// newExecutor builds the command executor. Its id log lives next to the
// outbox, so that at-most-once holds across restarts.
func (g *Gateway) newExecutor(reload func(context.Context) error) (*command.Executor, error) {
	byID := map[string]drivers.Writer{}
	for _, d := range g.devices {
		if w, ok := d.drv.(drivers.Writer); ok {
			byID[d.spec.ID] = w
		}
	}
	return command.New(command.Options{
		StateDir: filepath.Join(filepath.Dir(filepath.Clean(g.cfg.Outbox.Path)), "commands"),
		Devices:  func(id string) (drivers.Writer, bool) { w, ok := byID[id]; return w, ok },
		Reload:   reload,
		Rules:    g.rules,
		Emit:     func(r payload.Record) { g.Emit(context.Background(), payload.Event, []payload.Record{r}) },
		Reply: func(ctx context.Context, id string, body []byte) error {
			return g.up.u.PublishReply(ctx, id, body)
		},
		Handlers: g.laneHandlers(g.accessHandlers()),
		Logger:   g.log.With("part", "command"),
		Clock:    g.clock,
	})
}

// Command runs a named command for a rule (rules.Commander).
func (g *Gateway) Command(ctx context.Context, name string, args map[string]string) error {
	return g.exec.Command(ctx, name, args)
}
