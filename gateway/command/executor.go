package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Defaults of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultQueueLen   = 16
	DefaultReplyRetry = 30 * time.Second
)

// Measurement is the measurement of the event recorded for every command.
const Measurement = "command"

// RuleSwitch turns local rules on and off (the rules engine's Enable).
type RuleSwitch interface {
	Enable(name string, on bool) error
}

// Action is a command whose arguments were checked, ready to run.
type Action struct {
	// Run does the work under a deadline and returns the reply's result.
	Run func(ctx context.Context) (map[string]any, error)
	// Hold is how long Run waits on purpose (a pulse); it is added to the
	// executor's Timeout to make the deadline.
	Hold time.Duration
}

// Handler checks a command's arguments and returns what to run. An error
// (from args.Err, or its own checks) means the command is refused without
// running.
type Handler func(args *Args) (Action, error)

// Options configure an Executor. StateDir is required.
type Options struct {
	// StateDir holds the id log (StoreFile) that makes execution
	// at-most-once across restarts.
	StateDir string
	// Devices finds a writable device by id (device.write, relay.pulse);
	// nil leaves those commands out. Writers must be safe for concurrent
	// use (rules call Execute while the worker runs cloud commands).
	Devices func(id string) (drivers.Writer, bool)
	// Reload validates the configuration on disk and, only when it is
	// valid, applies it (config.reload). It returns every problem found
	// (errors.Join or one error per line); the running configuration must
	// stay when it fails. Nil leaves config.reload out.
	Reload func(ctx context.Context) error
	// Rules serves rule.enable and rule.disable; nil leaves them out.
	Rules RuleSwitch
	// Emit receives one event record per command (measurement "command")
	// for the events stream; nil drops them. It is called from the worker
	// and from Execute's callers, so it must be safe for concurrent use
	// and return quickly.
	Emit func(payload.Record)
	// Reply publishes a reply on …/cmd-reply/{id}, as
	// (*uplink.Uplink).PublishReply does; nil drops replies.
	Reply func(ctx context.Context, id string, body []byte) error
	// Handlers adds commands, or replaces built-in ones, by name.
	Handlers map[string]Handler

	Clock  clock.Clock // the real clock when nil; tests hand in a clock.Fake
	Logger *slog.Logger
	// Timeout bounds each command's run (default 10 s).
	Timeout time.Duration
	// QueueLen bounds the commands waiting for the worker (default 16);
	// further ones are refused with a "busy" error reply.
	QueueLen int
	// MaxIDs bounds the unexpired ids remembered (default DefaultMaxIDs).
	MaxIDs int
	// ReplyRetry is how long a reply is retried while it cannot be
	// published (default 30 s).
	ReplyRetry time.Duration
}

// Stats are the executor's counters.
type Stats struct {
	Received     uint64 // messages handed to Handle
	Executed     uint64 // commands that ran (cloud and local)
	Failed       uint64 // of those, the ones whose handler returned an error
	Refused      uint64 // malformed, bad arguments, unknown name, or not recorded
	Duplicates   uint64
	Expired      uint64
	Busy         uint64 // refused because the queue was full
	ReplyErrors  uint64 // replies given up on
	RepliesSent  uint64
	QueueCurrent int
}

type inbound struct {
	topic string
	body  []byte
	at    time.Time
}

type outbound struct {
	id   string
	body []byte
}

// Executor runs commands: the cloud's, delivered by Handle and run one at a
// time by Run's worker, and local callers' through Execute and Command.
type Executor struct {
	opts     Options
	clock    clock.Clock
	log      *slog.Logger
	store    *store
	handlers map[string]Handler
	queue    chan inbound
	replies  chan outbound

	received, executed, failed, refused, duplicates, expired, busy, replyErrors, sent atomic.Uint64
}

// New checks opts, opens the id log in StateDir and registers the built-in
// commands whose hooks are set.
func New(opts Options) (*Executor, error) {
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.MaxIDs <= 0 {
		opts.MaxIDs = DefaultMaxIDs
	}
	if opts.ReplyRetry <= 0 {
		opts.ReplyRetry = DefaultReplyRetry
	}
	log := opts.Logger.With("component", "command")
	st, err := openStore(opts.StateDir, opts.MaxIDs, opts.Clock.Now, log)
	if err != nil {
		return nil, err
	}
	e := &Executor{
		opts: opts, clock: opts.Clock, log: log, store: st,
		handlers: map[string]Handler{},
		queue:    make(chan inbound, opts.QueueLen),
		replies:  make(chan outbound, opts.QueueLen*2),
	}
	e.builtins()
	for name, h := range opts.Handlers {
		if !payload.ValidCommandName(name) || h == nil {
			st.close()
			return nil, fmt.Errorf("command: handler %q: want a dotted lower-case name and a non-nil handler", name)
		}
		e.handlers[name] = h
	}
	return e, nil
}

// Names lists the commands this executor runs, sorted.
func (e *Executor) Names() []string {
	out := make([]string, 0, len(e.handlers))
	for n := range e.handlers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Handle queues a message received on gw/v1/{site}/{gateway}/cmd/{id}. It
// never blocks: when the queue is full the command is refused with a busy
// reply (its id is not remembered, so the cloud may send it again). An empty
// body (a cleared retained command) is ignored. Its signature is
// uplink.Options.OnCommand's.
func (e *Executor) Handle(topic string, body []byte) {
	e.received.Add(1)
	if len(body) == 0 {
		e.log.Debug("ignoring an empty command message", "topic", topic)
		return
	}
	in := inbound{topic: topic, body: body, at: e.clock.Now()}
	select {
	case e.queue <- in:
		return
	default:
	}
	e.busy.Add(1)
	id := topicID(topic)
	e.log.Warn("command queue full; refusing command", "topic", topic, "queue", cap(e.queue))
	if id == "" {
		return
	}
	r := &payload.Reply{ID: id, Status: payload.ReplyError, Message: fmt.Sprintf("gateway busy: %d commands are waiting; not run, send it again later", cap(e.queue)), Executed: e.clock.Now()}
	e.event(SourceCloud, "", r, in.at)
	e.sendReply(id, r.Encode())
}

// topicID returns the command id of a command topic, or "" when the topic
// is not one or its id is invalid.
func topicID(topic string) string {
	t, err := payload.ParseTopic(topic)
	if err != nil || t.Suffix != payload.SuffixCmd || !payload.ValidCommandID(t.ID) {
		return ""
	}
	return t.ID
}

func (e *Executor) sendReply(id string, body []byte) {
	select {
	case e.replies <- outbound{id: id, body: body}:
	default:
		e.replyErrors.Add(1)
		e.log.Error("command reply queue full; dropping reply", "id", id)
	}
}

// Run executes queued commands one at a time and publishes their replies
// until ctx ends. Commands still queued then are not run (their ids were
// not recorded, so a redelivery runs them later).
func (e *Executor) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.replyLoop(ctx)
	}()
	for {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case in := <-e.queue:
			e.process(ctx, in)
		}
	}
}

func (e *Executor) replyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case out := <-e.replies:
			e.publish(ctx, out)
		}
	}
}

// publish sends one reply, retrying with backoff for ReplyRetry.
func (e *Executor) publish(ctx context.Context, out outbound) {
	if e.opts.Reply == nil {
		return
	}
	give := e.clock.Now().Add(e.opts.ReplyRetry)
	wait := 250 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
		err := e.opts.Reply(rctx, out.id, out.body)
		cancel()
		if err == nil {
			e.sent.Add(1)
			return
		}
		if ctx.Err() != nil || !e.clock.Now().Add(wait).Before(give) {
			e.replyErrors.Add(1)
			e.log.Error("command reply not published; giving up (the cloud can resend the command and get a duplicate reply with the result)", "id", out.id, "err", err)
			return
		}
		e.log.Debug("command reply not published; retrying", "id", out.id, "err", err)
		clock.Sleep(ctx, e.clock, wait) //nolint:errcheck // ctx is checked above
		wait = min(2*wait, 5*time.Second)
	}
}

// process runs one command from the cloud and replies.
func (e *Executor) process(ctx context.Context, in inbound) {
	id := topicID(in.topic)
	if id == "" {
		e.refused.Add(1)
		e.log.Warn("command on a topic without a valid id; no reply possible", "topic", in.topic)
		e.event(SourceCloud, "", &payload.Reply{Status: payload.ReplyError, Message: fmt.Sprintf("topic %q: want gw/v1/{site}/{gateway}/cmd/{id} with id [A-Za-z0-9_-]{1,64}", payload.Clip(in.topic))}, in.at)
		return
	}
	r := e.decide(ctx, id, in.body, in.at)
	body := r.Encode()
	e.event(SourceCloud, r.Name, r, in.at)
	e.sendReply(id, body)
}

// decide returns the reply to one command body, running it when it should.
func (e *Executor) decide(ctx context.Context, id string, body []byte, at time.Time) *payload.Reply {
	reply := func(name string, st payload.ReplyStatus, msg string, result map[string]any) *payload.Reply {
		return &payload.Reply{ID: id, Name: name, Status: st, Message: msg, Result: result, Executed: e.clock.Now()}
	}
	cmd, err := payload.DecodeCommand(body)
	if err != nil {
		e.refused.Add(1)
		e.log.Warn("malformed command", "id", id, "err", err)
		return reply("", payload.ReplyError, err.Error(), nil)
	}
	if cmd.ID != id {
		e.refused.Add(1)
		return reply(cmd.Name, payload.ReplyError, fmt.Sprintf("command: \"id\" %q differs from the topic's id %q", cmd.ID, id), nil)
	}
	log := e.log.With("id", id, "name", cmd.Name)
	if prev, ok := e.store.lookup(id); ok {
		e.duplicates.Add(1)
		log.Info("duplicate command; not run again")
		if prev.reply == nil {
			return reply(cmd.Name, payload.ReplyDuplicate, "already received; it was started before a restart and its result is unknown", nil)
		}
		var orig map[string]any
		if err := json.Unmarshal(prev.reply, &orig); err != nil {
			return reply(cmd.Name, payload.ReplyDuplicate, "already executed; its stored result is unreadable", nil)
		}
		return reply(cmd.Name, payload.ReplyDuplicate, fmt.Sprintf("already executed with status %v; not run again", orig["status"]), map[string]any{"original": orig})
	}
	now := e.clock.Now()
	if now.After(cmd.Expires) {
		e.expired.Add(1)
		log.Warn("expired command; not run", "expires", cmd.Expires, "now", now)
		return reply(cmd.Name, payload.ReplyExpired, fmt.Sprintf("expired at %s; the gateway's clock says %s; not run", cmd.Expires.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano)), nil)
	}
	h, ok := e.handlers[cmd.Name]
	if !ok {
		e.refused.Add(1)
		return reply(cmd.Name, payload.ReplyUnknown, fmt.Sprintf("no command %q on this gateway; want one of %s", cmd.Name, strings.Join(e.Names(), ", ")), nil)
	}
	act, err := h(NewArgs(cmd.Args))
	if err != nil {
		e.refused.Add(1)
		return reply(cmd.Name, payload.ReplyError, fmt.Sprintf("%s: not run: %s", cmd.Name, oneLine(err)), nil)
	}
	if err := e.store.begin(id, cmd.Expires); err != nil {
		e.refused.Add(1)
		log.Error("cannot record command id; not running it", "err", err)
		return reply(cmd.Name, payload.ReplyError, fmt.Sprintf("not run: %v", err), nil)
	}
	result, err := e.run(ctx, act)
	var r *payload.Reply
	if err != nil {
		log.Warn("command failed", "err", err)
		r = reply(cmd.Name, payload.ReplyError, oneLine(err), result)
	} else {
		log.Info("command executed")
		r = reply(cmd.Name, payload.ReplyOK, "", result)
	}
	if err := e.store.finish(id, cmd.Expires, r.Encode()); err != nil {
		log.Error("cannot record command result", "err", err)
	}
	return r
}

// run runs an action under the executor's deadline.
func (e *Executor) run(ctx context.Context, act Action) (result map[string]any, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout+act.Hold)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("command handler panicked: %v", p)
		}
	}()
	e.executed.Add(1)
	result, err = act.Run(ctx)
	if err != nil {
		e.failed.Add(1)
	}
	return result, err
}

// ErrUnknown is returned by Execute for a name no handler has.
var ErrUnknown = errors.New("no such command")

// Execute runs a command for a local caller (the rules engine) in the
// caller's goroutine, under the executor's deadline. It has no id, is not
// remembered and never expires; it is recorded as an event with source
// "local".
func (e *Executor) Execute(ctx context.Context, name string, args map[string]any) (map[string]any, error) {
	at := e.clock.Now()
	h, ok := e.handlers[name]
	if !ok {
		err := fmt.Errorf("command %q: %w (want one of %s)", payload.Clip(name), ErrUnknown, strings.Join(e.Names(), ", "))
		e.refused.Add(1)
		e.event(SourceLocal, name, &payload.Reply{Status: payload.ReplyUnknown, Message: err.Error()}, at)
		return nil, err
	}
	if args == nil {
		args = map[string]any{}
	}
	act, err := h(NewArgs(args))
	if err != nil {
		e.refused.Add(1)
		err = fmt.Errorf("command %s: not run: %w", name, err)
		e.event(SourceLocal, name, &payload.Reply{Status: payload.ReplyError, Message: oneLine(err)}, at)
		return nil, err
	}
	result, err := e.run(ctx, act)
	r := &payload.Reply{Status: payload.ReplyOK}
	if err != nil {
		err = fmt.Errorf("command %s: %w", name, err)
		r = &payload.Reply{Status: payload.ReplyError, Message: oneLine(err)}
	}
	e.event(SourceLocal, name, r, at)
	return result, err
}

// Command runs a command for the rules engine (its Commander interface).
// Arguments are strings as rules write them; one that reads as a JSON
// number, true or false is passed as that (so "value": "1" writes the
// number 1), anything else as the string.
func (e *Executor) Command(ctx context.Context, name string, args map[string]string) error {
	m := make(map[string]any, len(args))
	for k, v := range args {
		m[k] = scalar(v)
	}
	_, err := e.Execute(ctx, name, m)
	return err
}

func scalar(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	n := json.Number(s)
	if _, err := n.Float64(); err == nil && json.Valid([]byte(s)) {
		return n
	}
	return s
}

// Event sources.
const (
	SourceCloud = "cloud"
	SourceLocal = "local"
)

// event records a command's outcome for the events stream.
func (e *Executor) event(source, name string, r *payload.Reply, at time.Time) {
	if e.opts.Emit == nil {
		return
	}
	if !payload.ValidCommandName(name) {
		name = "invalid"
	}
	now := e.clock.Now()
	msg := r.Message
	if len(msg) > 256 {
		msg = msg[:256] + "…"
	}
	e.opts.Emit(payload.Record{
		Measurement: Measurement,
		Tags:        map[string]string{"name": name, "status": string(r.Status), "source": source},
		Fields: map[string]payload.Value{
			"id":         payload.String(r.ID),
			"message":    payload.String(msg),
			"latency_ms": payload.Float(float64(now.Sub(at)) / float64(time.Millisecond)),
		},
		Time: now,
	})
}

// Stats returns the executor's counters.
func (e *Executor) Stats() Stats {
	return Stats{
		Received: e.received.Load(), Executed: e.executed.Load(), Failed: e.failed.Load(),
		Refused: e.refused.Load(), Duplicates: e.duplicates.Load(), Expired: e.expired.Load(),
		Busy: e.busy.Load(), ReplyErrors: e.replyErrors.Load(), RepliesSent: e.sent.Load(),
		QueueCurrent: len(e.queue),
	}
}

// Close closes the id log. Call it after Run returned.
func (e *Executor) Close() error { return e.store.close() }

// oneLine joins a multi-line error (errors.Join) with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
