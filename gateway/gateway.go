// Package gateway is the edge runtime that gatewayd runs: it builds the
// serial buses, devices, pipeline, outbox, uplink and status server from a
// validated config, and supervises them.
//
// Data flows one way: each device is polled at its own rate, the devices of
// a serial bus by one goroutine per bus through its arbiter (schedule.go;
// card readers also in their line's idle time, for their events only: see
// sweep in doors.go); what it reports is stamped with the
// observation time, filtered by report-by-exception, and handed to a single
// committer that appends it to the durable outbox in groups; the uplink
// publishes what the outbox holds and acknowledges it back. A device that
// fails never blocks another (the bus backs it off); a full outbox or a
// dead uplink never blocks polling for longer than the bounded queue
// between them takes to fill, and everything the gateway gives up is
// counted.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/gateway/pipeline"
	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/gateway/status"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// queueLen bounds the records waiting between the pollers and the outbox.
const queueLen = 4096

// Options are what the caller adds to the config.
type Options struct {
	Version string
	// Logger is the gateway's logger. The caller attaches the site and
	// gateway attributes (gatewayd does); each part attaches its own once
	// (a bus its name and port, a driver its device id).
	Logger *slog.Logger
	// Clock is the clock of the poll schedule, observation times, device
	// and plugin back-off, rules, commands and the uplink (the real clock
	// when nil). Serial lines keep real time: see gateway/bus.
	Clock clock.Clock
	// OpenPin opens a GPIO line by name for doors and devices: when nil,
	// the simulator's lines when the config sets gpio.simulator, else the
	// board's (gpio.Open).
	OpenPin func(name string) (periphgpio.PinIO, error)
	// Started is when the process started; uptime and the birth's
	// started count from it, so that a config reload (a new Gateway in the
	// same process) does not reset them. Zero: when New runs.
	Started time.Time
	// Reload serves the config.reload command: it validates the config on
	// disk and, only when it is valid, arranges for the gateway to restart
	// with it. Nil leaves config.reload out.
	Reload func(ctx context.Context) error
}

// Gateway is one running gateway.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	clock   clock.Clock
	now     func() time.Time // clock.Now
	started time.Time

	ob       *outboxAdapter
	buses    []*busEntry
	devices  []*device
	up       *uplinkAdapter
	filter   *pipeline.Filter
	rules    *rules.Engine
	exec     *command.Executor
	store    *access.Store
	doors    []*doorEntry
	byReader map[string]*doorEntry
	lanes    *laneSet                   // nil without lanes and lots
	gpioSim  interface{ Close() error } // the GPIO simulator link, or nil
	shared   *drivers.Shared            // what the devices share (profiles read once), and rules with them
	queue    chan item

	readings, reported, events, refused atomic.Uint64
	statusAddr                          atomic.Value // string
}

type item struct {
	kind payload.Kind
	recs []payload.Record
}

// device is one polled device and its counters.
type device struct {
	spec    drivers.Spec
	drv     drivers.Device
	poll    time.Duration
	policy  pipeline.Policy
	measure string
	// lineBound: the device's driver talks on a serial bus through its
	// arbiter (drivers.Info.Bus), so the line's deadlines bound each poll
	// and the bus's schedule polls it (schedule.go).
	lineBound bool

	polls, errs, timeouts, crcErrors, skipped atomic.Uint64

	mu       sync.Mutex
	state    string // "starting", "ok", "failing", "backoff"
	lastPoll time.Time
	lastOK   time.Time
	lastErr  string
	// lastRecs are the last poll's records (shallow copies, the slice
	// reused from poll to poll) observed at lastAt; the status page
	// renders them when asked, not on every poll.
	lastRecs []payload.Record
	lastAt   time.Time
}

// keepLast keeps a poll's records for the status page. The records' maps
// are shared: nothing changes a record's maps once its driver returned it.
// A record that reads the same as the one kept before it keeps the older
// fields map, which is usually also the one the pipeline's filter holds
// for the series (the last reported): a device that does not change then
// holds one fields map instead of two (TestLastValuesKeepUnchangedMaps).
// The caller holds d.mu.
func (d *device) keepLast(recs []payload.Record, t time.Time) {
	old := len(d.lastRecs)
	for i, r := range recs {
		if i < old && sameReading(&d.lastRecs[i], &r) {
			r.Fields = d.lastRecs[i].Fields
		}
		if i < old {
			d.lastRecs[i] = r
		} else {
			d.lastRecs = append(d.lastRecs, r)
		}
	}
	clear(d.lastRecs[len(recs):])
	d.lastRecs, d.lastAt = d.lastRecs[:len(recs)], t
}

// sameReading reports whether two records of a device hold the same
// measurement, tags and field values.
func sameReading(a, b *payload.Record) bool {
	if a.Measurement != b.Measurement || len(a.Fields) != len(b.Fields) || !maps.Equal(a.Tags, b.Tags) {
		return false
	}
	for k, v := range b.Fields {
		if w, ok := a.Fields[k]; !ok || !w.Equal(v) {
			return false
		}
	}
	return true
}

// lastValues renders the last poll's records for the status page, each on
// its own. The caller holds d.mu.
func (d *device) lastValues() []status.Record {
	if len(d.lastRecs) == 0 {
		return nil
	}
	return statusRecords(d.lastRecs, d.lastAt)
}

// New builds a gateway from a validated config. It opens the outbox (which
// recovers what a previous run left) and constructs every device; it does
// not open serial ports or connect (Run does).
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	g := &Gateway{
		cfg: cfg, log: opts.Logger, version: opts.Version, clock: clock.OrReal(opts.Clock),
		filter: pipeline.New(), queue: make(chan item, queueLen),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.now = g.clock.Now
	if g.version == "" {
		g.version = "dev"
	}
	g.statusAddr.Store("")
	g.started = opts.Started
	if g.started.IsZero() {
		g.started = g.now()
	}
	var err error
	if g.ob, err = openOutbox(cfg, g.log); err != nil {
		return nil, err
	}
	fail := func(err error) (*Gateway, error) {
		if g.exec != nil {
			g.exec.Close()
		}
		for _, de := range g.doors {
			de.close()
		}
		g.lanes.close()
		if g.gpioSim != nil {
			g.gpioSim.Close()
		}
		g.ob.Close()
		return nil, err
	}
	onBus := map[string][]string{} // bus name → drivers of its devices
	for _, dc := range cfg.Devices {
		if dc.Bus != "" {
			onBus[dc.Bus] = append(onBus[dc.Bus], dc.Driver)
		}
	}
	byName := map[string]*busEntry{}
	for _, bc := range cfg.Buses {
		be, err := newBus(bc, onBus[bc.Name], g.log, g.clock)
		if err != nil {
			return fail(err)
		}
		g.buses = append(g.buses, be)
		byName[bc.Name] = be
	}
	openPin := g.pinOpener(opts.OpenPin)
	g.shared = &drivers.Shared{}
	for _, dc := range cfg.Devices {
		info, ok := drivers.Lookup(dc.Driver)
		if !ok {
			return fail(fmt.Errorf("gateway: device %s: unknown driver %q (known: %s)", dc.ID, dc.Driver, strings.Join(drivers.Names(), ", ")))
		}
		spec := specOf(dc)
		// The drivers attach the device's attributes to the logger.
		env := drivers.Env{Logger: g.log, Now: g.now, ProfilesDir: cfg.ProfilesDir, Shared: g.shared, OpenPin: openPin}
		if dc.Bus != "" {
			be := byName[dc.Bus]
			if be == nil {
				return fail(fmt.Errorf("gateway: device %s: bus %q is not defined", dc.ID, dc.Bus))
			}
			env.Bus = be.device(dc.ID)
		}
		drv, err := info.New(spec, env)
		if err != nil {
			return fail(fmt.Errorf("gateway: device %s: %w", dc.ID, err))
		}
		d := &device{spec: spec, drv: drv, poll: dc.Poll, state: "starting", lineBound: info.Bus != nil && dc.Bus != "",
			policy: pipeline.Policy{Deadband: dc.Deadband, MaxSilence: dc.MaxSilence}, measure: info.Measurement}
		if m, ok := drv.(interface{ Measurement() string }); ok {
			d.measure = m.Measurement()
		}
		g.devices = append(g.devices, d)
	}
	if g.rules, err = g.newRules(); err != nil {
		return fail(err)
	}
	if g.store, g.doors, g.byReader, err = g.newDoors(openPin); err != nil {
		return fail(err)
	}
	if g.lanes, err = g.newLanes(openPin); err != nil {
		return fail(err)
	}
	if g.exec, err = g.newExecutor(opts.Reload); err != nil {
		return fail(err)
	}
	g.up, err = newUplink(cfg, g)
	if err != nil {
		return fail(err)
	}
	return g, nil
}

// StatusAddr returns the status server's bound address once Run started it.
func (g *Gateway) StatusAddr() string { return g.statusAddr.Load().(string) }

// Run runs the gateway until ctx ends, then stops polling, commits what is
// queued, and disconnects cleanly. It returns the first fatal error.
func (g *Gateway) Run(ctx context.Context) error {
	g.log.Info("gateway starting", "version", g.version,
		"buses", len(g.buses), "devices", len(g.devices))

	var srv *status.Server
	if g.cfg.Status.Listen != "" {
		var err error
		if srv, err = status.Listen(g.cfg.Status.Listen, g.Snapshot, g.log); err != nil {
			g.ob.Close()
			return err
		}
		g.statusAddr.Store(srv.Addr())
		g.log.Info("status server listening", "addr", "http://"+srv.Addr()+"/status")
	}

	// Three lifetimes: the uplink and status server outlive the pollers, so
	// that queued records are committed before the outbox closes.
	upCtx, stopUp := context.WithCancel(context.WithoutCancel(ctx))
	var upWG sync.WaitGroup
	upWG.Add(1)
	go func() { defer upWG.Done(); g.up.run(upCtx) }()
	if srv != nil {
		upWG.Add(1)
		go func() { defer upWG.Done(); g.logErr("status server stopped", srv.Serve(upCtx)) }()
	}

	var busWG sync.WaitGroup
	busCtx, stopBuses := context.WithCancel(context.WithoutCancel(ctx))
	for _, b := range g.buses {
		busWG.Add(1)
		go func() { defer busWG.Done(); b.run(busCtx, g.log) }()
	}

	// Give the ports a moment to open, so that the first polls do not
	// report devices offline on a bus that is only starting.
	g.waitBuses(ctx, time.Second)

	commitDone := make(chan struct{})
	go func() { defer close(commitDone); g.commit() }()

	// The rules engine acts on devices and emits records: it starts after
	// the buses and the committer and stops before them.
	rulesCtx, stopRules := context.WithCancel(context.WithoutCancel(ctx))
	rulesDone := make(chan struct{})
	go func() { defer close(rulesDone); g.logErr("rules engine stopped", g.rules.Run(rulesCtx)) }()
	execDone := make(chan struct{})
	go func() { defer close(execDone); g.logErr("command executor stopped", g.exec.Run(rulesCtx)) }()
	var doorWG sync.WaitGroup
	for _, de := range g.doors {
		doorWG.Add(1)
		go func() { defer doorWG.Done(); de.run(rulesCtx, g) }()
	}

	laneDone := make(chan struct{})
	go func() { defer close(laneDone); g.lanes.run(rulesCtx, g) }()

	var pollWG sync.WaitGroup
	for _, s := range g.schedules() {
		pollWG.Add(1)
		go func() { defer pollWG.Done(); s.run(ctx, g) }()
	}
	for _, sw := range g.sweeps() {
		pollWG.Add(1)
		go func() { defer pollWG.Done(); sw.run(ctx, g) }()
	}
	pollWG.Add(1)
	go func() { defer pollWG.Done(); g.healthLoop(ctx) }()

	<-ctx.Done()
	g.log.Info("gateway stopping")
	pollWG.Wait()
	stopRules()
	<-rulesDone
	<-execDone
	doorWG.Wait()
	for _, de := range g.doors {
		de.close()
	}
	<-laneDone
	g.lanes.close()
	g.exec.Close()
	close(g.queue)
	<-commitDone
	stopBuses()
	busWG.Wait()
	stopUp()
	upWG.Wait()
	for _, d := range g.devices {
		if c, ok := d.drv.(drivers.Closer); ok {
			c.Close()
		}
	}
	if g.gpioSim != nil {
		g.gpioSim.Close()
	}
	err := g.ob.Close()
	g.log.Info("gateway stopped")
	return err
}

// logErr logs a part's unexpected end; parts return nil when stopped.
func (g *Gateway) logErr(msg string, err error) {
	if err != nil {
		g.log.Error(msg, "err", err)
	}
}

// commit appends queued records to the outbox, as many at a time as are
// waiting, so one fsync covers many devices' readings.
//
// Events never wait behind telemetry. The outbox may hold telemetry for up
// to its TelemetryWindow (outbox.telemetry_window) to share one fsync, so
// telemetry is encoded here as it is taken (Outbox.Encode) and queued in
// the outbox without waiting (AppendEncodedAsync, in order), and one waiter
// goroutine collects the results; events are appended here and waited
// for, and their commit ends the window and takes the queued telemetry
// along.
//
// Telemetry not yet durable is bounded (maxInFlight records). Once half of
// that is in flight the loop has the outbox commit at once instead of at
// the window's end, and goes on queueing the next half while that commit
// writes and syncs: a busy gateway keeps one group committing and the next
// one filling, so they overlap instead of taking turns. At the bound it
// holds telemetry back, and beyond twice that it stops taking from the
// queue (polling slows down).
func (g *Gateway) commit() {
	const (
		maxGroup    = 2000 // queue items taken per round
		maxInFlight = 20_000
		// maxSubmit bounds the records queued per append, so that one
		// submit never fills the whole bound: the next half can be
		// queued while the first is being committed.
		maxSubmit = maxInFlight / 8
	)
	type flight struct {
		done <-chan error
		n    int
	}
	var inFlight atomic.Int64
	waits := make(chan flight, maxInFlight) // one entry holds a record at least
	freed := make(chan struct{}, 1)
	waiterDone := make(chan struct{})
	go func() {
		defer close(waiterDone)
		for f := range waits {
			if err := <-f.done; err != nil {
				g.refuse(payload.Telemetry, f.n, err)
			}
			inFlight.Add(-int64(f.n))
			select {
			case freed <- struct{}{}:
			default:
			}
		}
	}()
	var ev []payload.Record
	var tele []outbox.Encoded // telemetry held here, teleN records
	teleN := 0
	queue := g.queue
	add := func(it item) {
		if it.kind == payload.Event {
			ev = append(ev, it.recs...)
			return
		}
		// Each Emit is encoded on its own, so that a record the outbox
		// refuses costs only its Emit, not every reading gathered with it,
		// into chunks of up to maxSubmit records. (Here, not in Emit:
		// encoding on every poller's goroutine grew each of their stacks
		// by a few KiB.)
		if len(tele) == 0 || tele[len(tele)-1].Records() >= maxSubmit {
			tele = append(tele, outbox.Encoded{})
		}
		if err := g.ob.EncodeTo(&tele[len(tele)-1], it.kind, it.recs); err != nil {
			g.refuse(it.kind, len(it.recs), err)
			return
		}
		teleN += len(it.recs)
	}
	// submit queues the telemetry held here in the outbox, unless too much
	// is in flight already.
	submit := func() bool {
		if teleN == 0 || inFlight.Load() >= maxInFlight {
			return false
		}
		k, n := 1, tele[0].Records() // one chunk, its buffers handed over
		if done, err := g.ob.AppendEncodedAsync(tele[0]); err != nil {
			g.refuse(payload.Telemetry, n, err)
		} else {
			waits <- flight{done, n}
			if inFlight.Add(int64(n)) >= maxInFlight/2 {
				// Waiting out the window would cap readings at maxInFlight
				// per window: commit what is queued now, and encode the
				// next half meanwhile.
				g.ob.CommitTelemetry()
			}
		}
		clear(tele[:k])
		tele, teleN = tele[k:], teleN-n
		if len(tele) == 0 {
			tele = nil
		}
		return true
	}
	closed := func() {
		queue = nil
		g.ob.EndTelemetryWindow() // stopping: the last readings need not wait
	}
	for queue != nil || teleN > 0 {
		if submit() {
			continue
		}
		in := queue
		if teleN >= maxInFlight {
			in = nil
		}
		select {
		case <-freed:
			continue
		case first, ok := <-in:
			if !ok {
				closed()
				continue
			}
			ev = ev[:0]
			add(first)
		}
	more:
		// A round ends once a submit's worth is encoded, so that it is
		// handed over (and committed) while the next is encoded.
		for n := 1; n < maxGroup && teleN < maxSubmit; n++ {
			select {
			case it, ok := <-queue:
				if !ok {
					closed()
					break more
				}
				add(it)
			default:
				break more
			}
		}
		for submit() { // first, so that the events' commit takes it along
		}
		if len(ev) > 0 {
			g.appendRecords(payload.Event, ev)
		}
	}
	close(waits)
	<-waiterDone
}

// appendRecords appends recs to the outbox and waits until they are durable.
// No context may cut it short, or accepted readings would be lost at
// shutdown.
func (g *Gateway) appendRecords(k payload.Kind, recs []payload.Record) {
	if err := g.ob.Append(context.Background(), k, recs); err != nil {
		g.refuse(k, len(recs), err)
	}
}

func (g *Gateway) refuse(k payload.Kind, n int, err error) {
	g.refused.Add(uint64(n))
	g.log.Error("outbox refused records", "kind", k, "records", n, "err", err)
}

// Emit queues records for the outbox. It blocks while the queue is full (the
// outbox is slower than the devices), which slows polling down rather than
// losing readings.
func (g *Gateway) Emit(ctx context.Context, kind payload.Kind, recs []payload.Record) {
	if len(recs) == 0 {
		return
	}
	if kind == payload.Event {
		g.events.Add(uint64(len(recs)))
	}
	select {
	case g.queue <- item{kind: kind, recs: recs}:
	case <-ctx.Done():
		// Shutting down: commit them anyway; the committer drains the
		// queue before the outbox closes.
		g.queue <- item{kind: kind, recs: recs}
	}
}

// pollOnce polls d once and hands on what it reports.
func (g *Gateway) pollOnce(ctx context.Context, d *device, log *slog.Logger) {
	var recs []payload.Record
	var err error
	if d.lineBound {
		// The line bounds every transaction (the bus's reply timeout,
		// the driver's bounded retries): no deadline, and so no
		// context and runtime timer, per poll.
		recs, err = d.drv.Poll(ctx)
	} else {
		// A real-time bound for what no line bounds (a plugin's process).
		pctx, cancel := context.WithTimeout(ctx, d.poll+5*time.Second)
		recs, err = d.drv.Poll(pctx)
		cancel()
	}
	observed := g.now()
	d.polls.Add(1)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		g.deviceFailed(ctx, d, observed, err, log)
		return
	}
	g.deviceOK(ctx, d, observed, recs, log)
	g.takeEvents(ctx, d, observed)
	if len(recs) == 0 {
		return
	}
	g.readings.Add(uint64(len(recs)))
	pipeline.Stamp(recs, observed)
	out := g.filter.Apply(&d.policy, recs)
	if len(out) > 0 {
		g.reported.Add(uint64(len(out)))
		// Rules see what is reported: every change and the max-silence
		// heartbeats; time-based conditions are re-checked by the engine's tick.
		g.rules.Observe(out)
		g.Emit(ctx, payload.Telemetry, out)
	}
}

// takeEvents hands a device's events to the doors (card reads), the rules
// and the outbox.
func (g *Gateway) takeEvents(ctx context.Context, d *device, observed time.Time) {
	if es, ok := d.drv.(drivers.EventSource); ok {
		if ev := es.TakeEvents(); len(ev) > 0 {
			pipeline.Stamp(ev, observed)
			g.presentCards(ctx, d.drv, observed)
			g.rules.ObserveEvents(ev)
			g.Emit(ctx, payload.Event, ev)
		}
	}
}

func (g *Gateway) deviceOK(ctx context.Context, d *device, t time.Time, recs []payload.Record, log *slog.Logger) {
	d.mu.Lock()
	prev := d.state
	d.state, d.lastPoll, d.lastOK, d.lastErr = "ok", t, t, ""
	if len(recs) > 0 {
		d.keepLast(recs, t)
	}
	d.mu.Unlock()
	if prev == "failing" || prev == "backoff" {
		log.Info("device answers again")
		g.emitFault(ctx, faultRecord(d, t, "online", "device answers again"))
	}
}

func (g *Gateway) deviceFailed(ctx context.Context, d *device, t time.Time, err error, log *slog.Logger) {
	state := "failing"
	switch {
	case errors.Is(err, errBackoff):
		d.skipped.Add(1)
		state = "backoff"
	case errors.Is(err, drivers.ErrTimeout):
		d.timeouts.Add(1)
		d.errs.Add(1)
	default:
		d.errs.Add(1)
		if isCRC(err) {
			d.crcErrors.Add(1)
		}
	}
	d.mu.Lock()
	prev := d.state
	d.state, d.lastPoll = state, t
	if state != "backoff" {
		d.lastErr = err.Error()
	}
	d.mu.Unlock()
	if prev == "ok" || prev == "starting" {
		log.Warn("device stopped answering", "err", err)
		g.emitFault(ctx, faultRecord(d, t, "offline", err.Error()))
	}
}

func (g *Gateway) emitFault(ctx context.Context, r payload.Record) {
	ev := []payload.Record{r}
	g.rules.ObserveEvents(ev)
	g.Emit(ctx, payload.Event, ev)
}

// faultRecord is the event raised when a device goes offline or comes back.
func faultRecord(d *device, t time.Time, state, msg string) payload.Record {
	tags := map[string]string{"device": d.spec.ID, "driver": d.spec.Driver}
	if d.spec.Bus != "" {
		tags["bus"] = d.spec.Bus
	}
	return payload.Record{Measurement: "fault", Time: t, Tags: tags,
		Fields: map[string]payload.Value{"state": payload.String(state), "message": payload.String(msg)}}
}

func (g *Gateway) healthLoop(ctx context.Context) {
	iv := g.cfg.Pipeline.HealthInterval
	if iv <= 0 {
		return
	}
	t := g.clock.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			g.Emit(ctx, payload.Telemetry, []payload.Record{g.healthRecord()})
		}
	}
}

// healthRecord is the gateway_health reading. It reads the counters it
// reports and nothing else: a full Snapshot renders every device's last
// values and details for the status page, about 1 KiB per device of
// garbage on every health tick (TestHealthRecordAllocations).
func (g *Gateway) healthRecord() payload.Record {
	var busErrors int64
	var busUtil float64
	for _, be := range g.buses {
		b := be.snapshot()
		busErrors += int64(b.Timeouts + b.Errors)
		busUtil = max(busUtil, b.Utilization)
	}
	ok, failed := 0, 0
	for _, d := range g.devices {
		d.mu.Lock()
		if d.state == "ok" {
			ok++
		} else {
			failed++
		}
		d.mu.Unlock()
	}
	ob := g.ob.snapshot()
	return payload.Record{Measurement: "gateway_health", Time: g.now(), Fields: map[string]payload.Value{
		"uplink_connected": payload.Bool(g.up.snapshot().Connected),
		"outbox_bytes":     payload.Int(ob.Bytes),
		"outbox_dropped":   payload.Int(ob.DroppedRecords),
		"outbox_unacked":   payload.Int(ob.Records),
		"bus_errors":       payload.Int(busErrors),
		"rss_bytes":        payload.Int(RSS()),
		"devices_ok":       payload.Int(int64(ok)),
		"devices_failed":   payload.Int(int64(failed)),
		"goroutines":       payload.Int(int64(runtime.NumGoroutine())),
		"bus_utilization":  payload.Float(busUtil),
	}}
}

// Birth is the status message published at each connect.
func (g *Gateway) Birth() *payload.Status {
	started := g.started
	s := &payload.Status{Site: g.cfg.Site, Gateway: g.cfg.Gateway, Online: true, Version: g.version,
		Started: &started, Time: g.now().UTC()}
	for _, d := range g.devices {
		s.Devices = append(s.Devices, payload.DeviceInfo{ID: d.spec.ID, Driver: d.spec.Driver, Measurement: d.measure, Tags: d.spec.Tags})
	}
	return s
}

// statusRecords copies a poll's records for the status page, one entry per
// record (an inverter's pv and each module's pv_mppt apart). The entries are
// never changed afterwards, so snapshots may share them. A record without a
// time of its own was observed at t.
func statusRecords(recs []payload.Record, t time.Time) []status.Record {
	out := make([]status.Record, len(recs))
	for i, r := range recs {
		f := make(map[string]any, len(r.Fields))
		for k, v := range r.Fields {
			f[k] = v.Interface()
		}
		out[i] = status.Record{Measurement: r.Measurement, Tags: maps.Clone(r.Tags), Fields: f, Time: r.Time}
		if r.Time.IsZero() {
			out[i].Time = t
		}
	}
	return out
}

// Snapshot returns the gateway's state for the status page and health.
func (g *Gateway) Snapshot() *status.Snapshot {
	s := &status.Snapshot{Site: g.cfg.Site, Gateway: g.cfg.Gateway, Version: g.version, Started: g.started,
		Now: g.now(), RSSBytes: RSS(), GoRoutine: runtime.NumGoroutine(), HeapInuseBytes: heapInuse(), CPUSeconds: cpuSeconds()}
	s.Uplink = g.up.snapshot()
	s.Outbox = g.ob.snapshot()
	s.Pipeline = status.Pipeline{Readings: g.readings.Load(), Reported: g.reported.Load(), Events: g.events.Load(),
		Refused: g.refused.Load(), QueueLen: len(g.queue), SeriesLen: g.filter.Len()}
	for _, b := range g.buses {
		s.Buses = append(s.Buses, b.snapshot())
	}
	for _, d := range g.devices {
		d.mu.Lock()
		ds := status.Device{ID: d.spec.ID, Driver: d.spec.Driver, Bus: d.spec.Bus, Unit: d.spec.Unit, State: d.state,
			Polls: d.polls.Load(), Errors: d.errs.Load(), Timeouts: d.timeouts.Load(), CRCErrors: d.crcErrors.Load(),
			Skipped: d.skipped.Load(), LastPoll: d.lastPoll, LastOK: d.lastOK, LastError: d.lastErr, Tags: d.spec.Tags}
		ds.LastValues = d.lastValues()
		if !d.lastOK.IsZero() {
			ds.AgeSeconds = s.Now.Sub(d.lastOK).Seconds()
		}
		d.mu.Unlock()
		if r, ok := d.drv.(drivers.Reporter); ok {
			ds.Details = r.Report()
		}
		s.Devices = append(s.Devices, ds)
	}
	sort.Slice(s.Devices, func(i, j int) bool { return s.Devices[i].ID < s.Devices[j].ID })
	for _, r := range g.rules.Stats().Rules {
		s.Rules = append(s.Rules, status.Rule{Name: r.Name, Enabled: r.Enabled, Evaluations: r.Evaluations, Fires: r.Fires,
			Errors: r.Errors, ActionErrors: r.ActionErrors, ActionDropped: r.ActionDropped, LastError: r.LastError,
			P50Micros: float64(r.P50) / 1e3, P99Micros: float64(r.P99) / 1e3})
	}
	if !s.Uplink.Connected {
		s.Problems = append(s.Problems, "uplink not connected")
	}
	for _, b := range s.Buses {
		if b.State != "up" {
			s.Problems = append(s.Problems, fmt.Sprintf("bus %s (%s) is %s: %s", b.Name, b.Port, b.State, b.LastError))
		}
	}
	g.lanes.snapshot(s)
	s.Problems = append(s.Problems, g.lanes.problems()...)
	return s
}

// RSS returns the process's resident set size in bytes (Linux), or 0.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
