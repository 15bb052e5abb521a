// Package host is the gateway's side of device plugins. A Plugin stands for
// one configured device whose driver is a plugin program: it implements
// drivers.Device, drivers.EventSource and drivers.Writer, so the gateway
// polls it like a built-in driver.
//
// Concepts:
//   - Declaration: a plugin is declared by its path and the SHA-256 of the
//     file. The file is hashed before every start; a mismatch is refused
//     with an error naming the file and both hashes.
//   - On demand: the process starts at the first call, not in New, and is
//     started again after it crashed, once its back-off has passed
//     (BackoffMin doubling up to BackoffMax). Calls during the back-off
//     fail fast with ErrBackoff.
//   - Deadlines: every call is cut at CallTimeout, so a hung plugin never
//     blocks the pipeline or other devices; after MaxCutCalls cut calls in a
//     row the process is killed and restarted.
//   - Reports: crashes, hangs, refusals and recoveries go to the OnHealth
//     hook and become `fault` events (tags device, code; fields state,
//     message) returned by TakeEvents.
//   - Bus: the device's drivers.Transactor is offered to the plugin as the
//     Bus service over go-plugin's broker; the plugin's frame rules become
//     drivers.FrameLenFunc here, so its transactions go through the
//     gateway's bus arbiter like any driver's.
//   - Versions: the host speaks protocol versions 1 and 2; a version-1 plugin
//     runs without events and writable points, other versions are refused
//     with a message listing the supported ones.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// Defaults for Options.
const (
	DefaultCallTimeout  = 5 * time.Second
	DefaultStartTimeout = 10 * time.Second
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = time.Minute
	DefaultMaxCutCalls  = 3
)

// Errors that callers branch on.
var (
	// ErrChecksum means the plugin file does not have the declared SHA-256.
	ErrChecksum = errors.New("plugin checksum mismatch")
	// ErrVersion means the plugin speaks no protocol version the host speaks.
	ErrVersion = errors.New("unsupported plugin protocol version")
	// ErrBackoff means the plugin failed recently and waits to be restarted.
	ErrBackoff = errors.New("plugin is backing off after a failure")
	// ErrCrashed means the plugin process died or broke its connection.
	ErrCrashed = errors.New("plugin process failed")
	// ErrCallTimeout means a call was cut at its deadline. It also wraps
	// drivers.ErrTimeout.
	ErrCallTimeout = errors.New("plugin did not answer before the call deadline")
	// ErrUnsupported means the plugin's protocol version lacks the call.
	ErrUnsupported = errors.New("not supported by the plugin's protocol version")
	// ErrClosed means Close was called.
	ErrClosed = errors.New("plugin host is closed")
	// ErrInvalid means the plugin refused a config, point or value.
	ErrInvalid = wire.ErrInvalid
)

// Options declare one plugin device.
type Options struct {
	Name   string // the device id: the `device` tag, in logs and errors
	Path   string // the plugin program
	SHA256 string // the program's SHA-256, 64 hex digits
	Logger *slog.Logger
	// Bus is the device's handle on its serial bus, nil when it has none.
	Bus drivers.Transactor
	// Config is the plugin's own settings, sent as a JSON object.
	Config map[string]any
	// Spec gives the unit, profile and tags handed to the plugin; its ID
	// defaults to Name.
	Spec drivers.Spec
	// CallTimeout cuts every call to the plugin. Default 5 s.
	CallTimeout time.Duration
	// StartTimeout bounds a start (process start, handshake, Describe,
	// Configure). Default 10 s.
	StartTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait before a restart.
	// Defaults 1 s and 1 min.
	BackoffMin, BackoffMax time.Duration
	// MaxCutCalls is how many calls in a row may be cut at their deadline
	// before the process is killed and restarted. Default 3.
	MaxCutCalls int
	// OnHealth, when set, is called on every change of the plugin's
	// state. It must not block.
	OnHealth func(Health)
	// Clock is the clock for back-off and event times (the real clock
	// when nil). A call's deadline is gRPC's, on the real clock.
	Clock clock.Clock
	// NoDirect keeps every call on gRPC: the direct channel (see
	// device.proto) is not offered. For comparisons and tests.
	NoDirect bool
	// Connect, when set, replaces starting Path (the checksum is then not
	// checked): package plugintest uses it to run a driver in-process.
	Connect func(ctx context.Context) (*Conn, error)

	// loggerNamesDevice is set by Factory: the gateway's logger for a
	// device already carries the device attribute.
	loggerNamesDevice bool
}

// Conn is a started plugin, as Options.Connect returns it.
type Conn struct {
	Protocol plugin.ClientProtocol
	Version  int    // the negotiated protocol version
	PID      int    // the plugin process, 0 when in-process
	Kill     func() // ends the plugin; called on restart and Close
}

// State is a plugin's health state.
type State string

// States.
const (
	Stopped  State = "stopped"  // not started yet, or closed
	Running  State = "running"  // started and answering
	Failed   State = "failed"   // crashed, hung or refused; waiting to restart
	Disabled State = "disabled" // refused at start (checksum, version, config)
)

// Health is a plugin's state, as OnHealth and Stats report it.
type Health struct {
	Device   string
	State    State
	Restarts int
	Err      error // why it failed, for Failed and Disabled
	Retry    time.Time
}

// Stats are a plugin's counters.
type Stats struct {
	Health
	PID          int
	Version      int // negotiated protocol version, 0 when not running
	Describe     Description
	Starts       uint64
	Calls        uint64
	CutCalls     uint64 // calls cut at their deadline
	Rejected     uint64 // records from the plugin that failed validation
	Transactions uint64 // bus transactions the plugin made
	BusErrors    uint64
	LostEvents   uint64 // plugin events dropped over maxPluginEvents
	Direct       bool   // polls go over the direct channel
}

// Description is what the plugin said it is.
type Description struct {
	Name, Description, Measurement, Version string
	Points                                  []Point
}

// Point is a writable point of the plugin.
type Point struct {
	Name string
	Type payload.ValueType
}

// Plugin is one plugin device.
type Plugin struct {
	opts    Options
	rule    bool // a rule plugin (NewRule), not a device
	log     *slog.Logger
	sum     []byte
	cfgJSON []byte

	startMu sync.Mutex // serializes starts

	mu       sync.Mutex
	sess     *session
	closed   bool
	failures int
	health   Health
	lastCode string
	events   []payload.Record // the host's own fault events
	// pluginEvents came with poll replies over the direct channel.
	pluginEvents []payload.Record
	desc         Description

	stats struct {
		starts, calls, cut, rejected, transactions, busErrors, lostEvents atomic.Uint64
	}
}

// session is one run of the plugin process.
type session struct {
	conn    *Conn
	dev     pb.DeviceClient
	version int
	cut     atomic.Int32 // consecutive cut calls
	srvMu   sync.Mutex
	srv     *grpc.Server
	dir     string  // the private directory offered for the direct channel
	direct  *direct // nil: polls go over gRPC
	rule    pb.RuleClient
}

func (s *session) kill() {
	if s.direct != nil {
		s.direct.close()
	}
	s.srvMu.Lock()
	if s.srv != nil {
		s.srv.Stop()
	}
	s.srvMu.Unlock()
	if s.conn.Kill != nil {
		s.conn.Kill()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

var (
	_ drivers.Reporter    = (*Plugin)(nil)
	_ drivers.Device      = (*Plugin)(nil)
	_ drivers.EventSource = (*Plugin)(nil)
	_ drivers.Writer      = (*Plugin)(nil)
	_ drivers.Closer      = (*Plugin)(nil)
)

var hexSum = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// New checks the options and returns the plugin device. It starts nothing:
// the process starts at the first call.
func New(opts Options) (*Plugin, error) { return newPlugin(opts, false) }

func newPlugin(opts Options, rule bool) (*Plugin, error) {
	if opts.Name == "" {
		return nil, errors.New("plugin: no device name")
	}
	p := &Plugin{opts: opts, rule: rule}
	if opts.Connect == nil {
		if opts.Path == "" {
			return nil, fmt.Errorf("plugin %s: no path", opts.Name)
		}
		if !hexSum.MatchString(opts.SHA256) {
			return nil, fmt.Errorf("plugin %s: sha256 %q is not 64 hex digits", opts.Name, opts.SHA256)
		}
		p.sum, _ = hex.DecodeString(opts.SHA256)
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	var err error
	if p.cfgJSON, err = json.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("plugin %s: config cannot be sent as JSON: %w", opts.Name, err)
	}
	if p.opts.CallTimeout <= 0 {
		p.opts.CallTimeout = DefaultCallTimeout
	}
	if p.opts.StartTimeout <= 0 {
		p.opts.StartTimeout = DefaultStartTimeout
	}
	if p.opts.BackoffMin <= 0 {
		p.opts.BackoffMin = DefaultBackoffMin
	}
	if p.opts.BackoffMax < p.opts.BackoffMin {
		p.opts.BackoffMax = max(DefaultBackoffMax, p.opts.BackoffMin)
	}
	if p.opts.MaxCutCalls <= 0 {
		p.opts.MaxCutCalls = DefaultMaxCutCalls
	}
	p.opts.Clock = clock.OrReal(p.opts.Clock)
	if p.opts.Spec.ID == "" {
		p.opts.Spec.ID = opts.Name
	}
	p.log = opts.Logger
	if p.log == nil {
		p.log = slog.Default()
	}
	if opts.loggerNamesDevice {
		p.log = p.log.With("plugin", opts.Path)
	} else {
		p.log = p.log.With(p.subject(), opts.Name, "plugin", opts.Path)
	}
	p.health = Health{Device: opts.Name, State: Stopped}
	return p, nil
}

// Checksum returns the SHA-256 of a file as 64 lowercase hex digits, the
// form Options.SHA256 takes.
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// versionList is the supported protocol versions for messages: "1, 2".
func versionList(versions []int) string {
	s := make([]string, len(versions))
	for i, v := range versions {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

var pluginVersion = regexp.MustCompile(`Plugin version: (\d+)`)

// launch starts the plugin program.
func (p *Plugin) launch(ctx context.Context) (*Conn, error) {
	got, err := Checksum(p.opts.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.opts.Name, err)
	}
	if want := strings.ToLower(p.opts.SHA256); got != want {
		return nil, fmt.Errorf("plugin %s: %s has sha256 %s, the config says %s: %w", p.opts.Name, p.opts.Path, got, want, ErrChecksum)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: p.pluginSets(),
		Cmd:              exec.Command(p.opts.Path),
		SecureConfig:     &plugin.SecureConfig{Checksum: p.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLogger(p.log),
		StartTimeout:     p.opts.StartTimeout,
		GRPCDialOptions:  wire.DialOptions(),
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		if m := pluginVersion.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("plugin %s: %s speaks protocol version %s; this gateway supports versions %s: %w",
				p.opts.Name, p.opts.Path, m[1], versionList(p.versions()), ErrVersion)
		}
		return nil, fmt.Errorf("plugin %s: start %s: %w", p.opts.Name, p.opts.Path, err)
	}
	conn := &Conn{Protocol: rpc, Version: c.NegotiatedVersion(), Kill: c.Kill}
	if rc := c.ReattachConfig(); rc != nil {
		conn.PID = rc.Pid
	}
	return conn, nil
}

// start starts the plugin and configures it. The caller holds startMu.
func (p *Plugin) start(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.StartTimeout)
	defer cancel()
	connect := p.opts.Connect
	if connect == nil {
		connect = p.launch
	}
	conn, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, version: conn.Version}
	ok := false
	defer func() {
		if !ok {
			s.kill()
		}
	}()
	if !supported(p.versions(), conn.Version) {
		return nil, fmt.Errorf("plugin %s: speaks protocol version %d; this gateway supports versions %s: %w",
			p.opts.Name, conn.Version, versionList(p.versions()), ErrVersion)
	}
	if p.rule {
		if err := p.startRule(ctx, s); err != nil {
			return nil, err
		}
		ok = true
		return s, nil
	}
	raw, err := conn.Protocol.Dispense(wire.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispense %q: %w", p.opts.Name, wire.PluginName, err)
	}
	wc, isClient := raw.(*wire.Client)
	if !isClient {
		return nil, fmt.Errorf("plugin %s: dispensed %T, want a gRPC device client", p.opts.Name, raw)
	}
	s.dev = wc.Device

	id := p.serveHost(s, wc.Broker, true)

	d, err := s.dev.Describe(ctx, &pb.DescribeRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil, fmt.Errorf("plugin %s: %s serves no device (is it a rule plugin?): %w", p.opts.Name, p.opts.Path, ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s: describe: %w", p.opts.Name, err)
	}
	desc := Description{Name: d.Name, Description: d.Description, Measurement: d.Measurement, Version: d.Version}
	for _, pt := range d.Points {
		desc.Points = append(desc.Points, Point{Name: pt.Name, Type: payload.ValueType(pt.Type)})
	}
	spec := p.opts.Spec
	if !p.opts.NoDirect && s.version >= wire.ProtocolV2 {
		// MkdirTemp makes the directory 0700: only this user can reach
		// the socket the plugin puts in it.
		if s.dir, err = os.MkdirTemp("", "luling-plugin-"); err != nil {
			p.log.Warn("plugin: no directory for the direct channel; polls go over gRPC", "err", err)
		}
	}
	cr, err := s.dev.Configure(ctx, &pb.ConfigureRequest{
		Spec:       &pb.Spec{Id: spec.ID, Unit: int32(spec.Unit), Profile: spec.Profile, Tags: spec.Tags},
		ConfigJson: p.cfgJSON,
		BrokerId:   id,
		HasBus:     p.opts.Bus != nil,
		DirectDir:  s.dir,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: configure: %w", p.opts.Name, err)
	}
	if cr.Error != nil {
		return nil, fmt.Errorf("plugin %s: configure: %w", p.opts.Name, wire.ErrorFromProto(cr.Error))
	}
	switch sock := cr.DirectSocket; {
	case sock == "" || s.dir == "":
		if s.dir != "" {
			os.RemoveAll(s.dir)
			s.dir = ""
		}
	case filepath.Dir(filepath.Clean(sock)) != s.dir:
		return nil, fmt.Errorf("plugin %s: configure: direct socket %q is outside the directory %s the gateway offered: %w",
			p.opts.Name, sock, s.dir, ErrInvalid)
	default:
		s.direct = &direct{path: sock, bus: &busServer{name: p.opts.Name, tx: p.opts.Bus, p: p}}
	}
	p.mu.Lock()
	p.desc = desc
	p.mu.Unlock()
	ok = true
	return s, nil
}

// serveHost serves the gateway's services to the plugin (Log, and Bus for
// a device) on a new broker id, which it returns.
func (p *Plugin) serveHost(s *session, broker *plugin.GRPCBroker, bus bool) uint32 {
	id := broker.NextId()
	go broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		srv := grpc.NewServer(append(opts, wire.ServerOptions()...)...)
		if bus {
			pb.RegisterBusServer(srv, &busServer{name: p.opts.Name, tx: p.opts.Bus, p: p})
		}
		pb.RegisterLogServer(srv, &logServer{log: p.log})
		s.srvMu.Lock()
		s.srv = srv
		s.srvMu.Unlock()
		return srv
	})
	return id
}

// pluginSets and versions are what the host speaks to its kind of plugin.
func (p *Plugin) pluginSets() map[int]plugin.PluginSet {
	if p.rule {
		return wire.RulePluginSets(&wire.RulePlugin{})
	}
	return wire.PluginSets(&wire.DevicePlugin{})
}

func (p *Plugin) versions() []int {
	if p.rule {
		return wire.RuleVersions
	}
	return wire.Versions
}

func supported(versions []int, v int) bool {
	for _, s := range versions {
		if s == v {
			return true
		}
	}
	return false
}

// ensure returns the running session, starting the plugin when needed.
func (p *Plugin) ensure(ctx context.Context) (*session, error) {
	if s, err := p.current(); s != nil || err != nil {
		return s, err
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if s, err := p.current(); s != nil || err != nil {
		return s, err
	}
	s, err := p.start(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrVersion) {
			return nil, err
		}
		code := "plugin_start_failed"
		switch {
		case errors.Is(err, ErrChecksum):
			code = "plugin_checksum"
		case errors.Is(err, ErrVersion):
			code = "plugin_version"
		case errors.Is(err, ErrInvalid):
			code = "plugin_config"
		}
		p.failed(nil, code, err)
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		s.kill()
		return nil, fmt.Errorf("plugin %s: %w", p.opts.Name, ErrClosed)
	}
	p.sess = s
	p.stats.starts.Add(1)
	restarted := p.failures > 0
	if restarted {
		p.events = append(p.events, p.fault(p.lastCode, "cleared", fmt.Sprintf("plugin running again after %d failure(s)", p.failures)))
	}
	p.health.State, p.health.Err, p.health.Retry = Running, nil, time.Time{}
	h := p.health
	p.mu.Unlock()
	p.log.Info("plugin started", "version", s.version, "pid", s.conn.PID, "restarted", restarted)
	p.report(h)
	return s, nil
}

// current returns the running session, or the error that keeps it from
// starting now, or neither when a start may be tried.
func (p *Plugin) current() (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("plugin %s: %w", p.opts.Name, ErrClosed)
	}
	if p.sess != nil {
		return p.sess, nil
	}
	if now := p.opts.Clock.Now(); now.Before(p.health.Retry) {
		return nil, fmt.Errorf("plugin %s: restart in %v: %w: %w", p.opts.Name, p.health.Retry.Sub(now).Round(time.Millisecond), ErrBackoff, p.health.Err)
	}
	return nil, nil
}

// backoff is the wait before restart number n (n ≥ 1).
func (p *Plugin) backoff(n int) time.Duration {
	d := p.opts.BackoffMin
	for i := 1; i < n && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, p.opts.BackoffMax)
}

func (p *Plugin) fault(code, state, msg string) payload.Record {
	return payload.Record{
		Measurement: "fault",
		Tags:        map[string]string{p.subject(): p.opts.Name, "code": code},
		Fields:      map[string]payload.Value{"state": payload.String(state), "message": payload.String(msg)},
		Time:        p.opts.Clock.Now(),
	}
}

// maxHostEvents caps the fault events waiting for TakeEvents.
const maxHostEvents = 64

// failed records a failure of session s (nil for a failed start), kills it
// and schedules the restart.
func (p *Plugin) failed(s *session, code string, err error) {
	p.mu.Lock()
	if s != nil && p.sess != s { // another caller already handled it
		p.mu.Unlock()
		return
	}
	p.sess = nil
	p.failures++
	p.lastCode = code
	wait := p.backoff(p.failures)
	if code == "plugin_checksum" || code == "plugin_version" || code == "plugin_config" {
		wait = p.opts.BackoffMax
		p.health.State = Disabled
	} else {
		p.health.State = Failed
	}
	p.health.Err = err
	p.health.Retry = p.opts.Clock.Now().Add(wait)
	if s != nil {
		p.health.Restarts++
	}
	if len(p.events) < maxHostEvents {
		p.events = append(p.events, p.fault(code, "active", err.Error()))
	}
	h := p.health
	p.mu.Unlock()
	if s != nil {
		s.kill()
	}
	p.log.Warn("plugin failed", "code", code, "err", err, "retry_in", wait)
	p.report(h)
}

func (p *Plugin) report(h Health) {
	if p.opts.OnHealth != nil {
		p.opts.OnHealth(h)
	}
}

// call runs f against the running plugin. f must give up at deadline, the
// earlier of ctx's deadline and CallTimeout from now, and returns the
// transport error; errors the plugin reports as values go through its
// reply.
func (p *Plugin) call(ctx context.Context, op string, f func(ctx context.Context, deadline time.Time, s *session) error) error {
	s, err := p.ensure(ctx)
	if err != nil {
		return err
	}
	p.stats.calls.Add(1)
	deadline := time.Now().Add(p.opts.CallTimeout) // real time: it becomes the gRPC call's deadline
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err = f(ctx, deadline, s)
	if err == nil {
		s.cut.Store(0)
		p.mu.Lock()
		if p.sess == s {
			p.failures = 0
		}
		p.mu.Unlock()
		return nil
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("plugin %s: %s: %w", p.opts.Name, op, ctx.Err())
	case errors.Is(err, errCut) || status.Code(err) == codes.DeadlineExceeded || !time.Now().Before(deadline):
		p.stats.cut.Add(1)
		err = fmt.Errorf("plugin %s: %s: no answer within %v: %w: %w", p.opts.Name, op, p.opts.CallTimeout, ErrCallTimeout, drivers.ErrTimeout)
		if int(s.cut.Add(1)) >= p.opts.MaxCutCalls {
			p.failed(s, "plugin_hung", fmt.Errorf("%d calls in a row cut at their deadline, killed: %w", p.opts.MaxCutCalls, err))
		}
		return err
	}
	if !broken(err) {
		return fmt.Errorf("plugin %s: %s: %w", p.opts.Name, op, err)
	}
	err = fmt.Errorf("plugin %s: %s: %w: %w", p.opts.Name, op, ErrCrashed, err)
	p.failed(s, "plugin_crashed", err)
	return err
}

// broken reports whether a call's error means the connection to the plugin
// is gone (the process died or closed it), as opposed to an error status
// that the plugin returned.
func broken(err error) bool {
	if errors.Is(err, errDirect) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return false
}

// Poll polls the plugin. Records that fail validation (bad names, no
// fields, NaN, a contract measurement with wrong types) are dropped,
// counted and logged; when every record was bad, Poll returns the error.
func (p *Plugin) Poll(ctx context.Context) ([]payload.Record, error) {
	var reply pollReply
	var resp *pb.PollResponse
	err := p.call(ctx, "poll", func(ctx context.Context, deadline time.Time, s *session) (err error) {
		if s.direct != nil {
			reply, err = s.direct.poll(ctx, deadline)
			return err
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		resp, err = s.dev.Poll(ctx, &pb.PollRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	var recs []payload.Record
	if resp != nil {
		reply.err = resp.Error
		recs, err = p.records("poll", resp.Records)
	} else {
		if len(reply.events) > 0 {
			evs, _ := p.check("take events", reply.events)
			p.keepEvents(evs)
		}
		recs, err = p.check("poll", reply.records)
	}
	if reply.err != nil {
		return nil, fmt.Errorf("plugin %s: poll: %w", p.opts.Name, wire.ErrorFromProto(reply.err))
	}
	if len(recs) == 0 && err != nil {
		return nil, err
	}
	return recs, nil
}

// records converts and validates records from the plugin.
func (p *Plugin) records(op string, in []*pb.Record) ([]payload.Record, error) {
	out := make([]payload.Record, 0, len(in))
	var first error
	for i, r := range in {
		rec, err := wire.RecordFromProto(r)
		if err != nil {
			err = p.reject(op, i, err)
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, rec)
	}
	return out, first
}

// check validates records that came over the direct channel, in place,
// and returns the good ones and the first error.
func (p *Plugin) check(op string, recs []payload.Record) ([]payload.Record, error) {
	out := recs[:0]
	var first error
	for i := range recs {
		if err := wire.CheckRecord(&recs[i]); err != nil {
			err = p.reject(op, i, err)
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, recs[i])
	}
	return out, first
}

// reject counts and logs a bad record from the plugin.
func (p *Plugin) reject(op string, i int, err error) error {
	p.stats.rejected.Add(1)
	err = fmt.Errorf("plugin %s: %s: record %d: %w", p.opts.Name, op, i, err)
	p.log.Warn("plugin sent a bad record", "err", err)
	return err
}

// takeHostEvents returns and forgets the events the host holds: its own
// fault events and those that came with poll replies; and the session.
func (p *Plugin) takeHostEvents() ([]payload.Record, *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append(p.events, p.pluginEvents...)
	p.events, p.pluginEvents = nil, nil
	return out, p.sess
}

// TakeEvents returns the host's fault events and the plugin's events. It
// never starts the plugin and waits at most CallTimeout.
func (p *Plugin) TakeEvents() []payload.Record {
	out, s := p.takeHostEvents()
	if s == nil || s.version < wire.ProtocolV2 || s.direct != nil {
		// Over the direct channel the plugin's events come with each
		// poll reply.
		return out
	}
	var resp *pb.TakeEventsResponse
	err := p.call(context.Background(), "take events", func(ctx context.Context, deadline time.Time, s *session) (err error) {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		resp, err = s.dev.TakeEvents(ctx, &pb.TakeEventsRequest{})
		return err
	})
	if err != nil {
		p.log.Warn("take events", "err", err)
		return out
	}
	evs, _ := p.records("take events", resp.Events)
	return append(out, evs...)
}

// maxPluginEvents caps the plugin's events that wait for TakeEvents. The
// gateway takes them after every successful poll, so the cap only bites
// when polls keep failing validation; what goes over it is counted and
// logged.
const maxPluginEvents = 4096

// keepEvents stores the events that came with a poll reply until
// TakeEvents.
func (p *Plugin) keepEvents(evs []payload.Record) {
	p.mu.Lock()
	room := maxPluginEvents - len(p.pluginEvents)
	lost := 0
	if len(evs) > room {
		lost = len(evs) - room
		evs = evs[:room]
	}
	p.pluginEvents = append(p.pluginEvents, evs...)
	p.mu.Unlock()
	if lost > 0 {
		n := p.stats.lostEvents.Add(uint64(lost))
		p.log.Error("plugin events dropped: too many waiting for the gateway", "dropped", lost, "dropped_total", n)
	}
}

// Write sets a writable point of the plugin.
func (p *Plugin) Write(ctx context.Context, point string, v payload.Value) error {
	if !v.Valid() {
		return fmt.Errorf("plugin %s: write %s: invalid value: %w", p.opts.Name, point, ErrInvalid)
	}
	var resp *pb.WriteResponse
	err := p.call(ctx, "write "+point, func(ctx context.Context, deadline time.Time, s *session) (err error) {
		if s.version < wire.ProtocolV2 {
			resp = &pb.WriteResponse{Error: &pb.Error{Kind: pb.Error_KIND_INVALID,
				Message: fmt.Sprintf("write %s: %v (protocol %d)", point, ErrUnsupported, s.version)}}
			return nil
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		resp, err = s.dev.Write(ctx, &pb.WriteRequest{Point: point, Value: wire.ValueToProto(v)})
		return err
	})
	if err != nil {
		return err
	}
	if resp.Error != nil {
		return fmt.Errorf("plugin %s: %w", p.opts.Name, wire.ErrorFromProto(resp.Error))
	}
	return nil
}

// Describe starts the plugin if needed and returns what it said it is.
func (p *Plugin) Describe(ctx context.Context) (Description, error) {
	if _, err := p.ensure(ctx); err != nil {
		return Description{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc, nil
}

// Stats returns the plugin's state and counters.
func (p *Plugin) Stats() Stats {
	p.mu.Lock()
	st := Stats{Health: p.health, Describe: p.desc}
	if p.sess != nil {
		st.PID = p.sess.conn.PID
		st.Version = p.sess.version
		st.Direct = p.sess.direct != nil
	}
	p.mu.Unlock()
	st.Starts = p.stats.starts.Load()
	st.Calls = p.stats.calls.Load()
	st.CutCalls = p.stats.cut.Load()
	st.Rejected = p.stats.rejected.Load()
	st.Transactions = p.stats.transactions.Load()
	st.BusErrors = p.stats.busErrors.Load()
	st.LostEvents = p.stats.lostEvents.Load()
	return st
}

// Report gives the plugin's state for the gateway's status page
// (drivers.Reporter).
func (p *Plugin) Report() map[string]any {
	st := p.Stats()
	r := map[string]any{
		"plugin": p.opts.Path, "state": string(st.State), "restarts": st.Restarts, "starts": st.Starts,
		"calls": st.Calls, "cut_calls": st.CutCalls, "rejected_records": st.Rejected,
		"bus_transactions": st.Transactions, "bus_errors": st.BusErrors,
	}
	if st.PID != 0 {
		r["pid"] = st.PID
		r["protocol"] = st.Version
		r["direct"] = st.Direct
	}
	if st.Describe.Name != "" {
		r["type"], r["version"] = st.Describe.Name, st.Describe.Version
	}
	if st.LostEvents > 0 {
		r["lost_events"] = st.LostEvents
	}
	if st.Err != nil {
		r["error"] = st.Err.Error()
	}
	if !st.Retry.IsZero() {
		r["retry_at"] = st.Retry.UTC().Format(time.RFC3339Nano)
	}
	return r
}

// Close stops the plugin process. Calls after Close fail with ErrClosed.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	s := p.sess
	p.sess = nil
	p.health.State = Stopped
	h := p.health
	p.mu.Unlock()
	if s != nil {
		s.kill()
	}
	p.report(h)
	return nil
}
