package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers"
)

// Handle is one device's transaction handle on a bus.
type Handle struct {
	bus  *Bus
	name string

	requests, replies, timeouts, errors, skipped atomic.Uint64
	lastSuccess                                  atomic.Int64 // Clock unix nanos, 0 = never
	lastError                                    atomic.Pointer[string]

	mu           sync.Mutex // guards the back-off
	failures     int        // consecutive missed replies
	backoff      time.Duration
	backoffUntil time.Time
	probing      bool
}

var _ drivers.Transactor = (*Handle)(nil)

// Name is the device's name.
func (h *Handle) Name() string { return h.name }

// Transact writes req and reads one reply whose end frameLen finds (none
// when frameLen is nil: a broadcast). It waits its turn on the line.
//
// Errors name the bus, port and device and wrap: drivers.ErrTimeout when no
// complete reply came in time (and context.DeadlineExceeded too when ctx's
// deadline was what ran out); ErrBackoff and drivers.ErrTimeout when the
// device is skipped while backing off; drivers.ErrBusDown when the port is
// not open (and ErrClosed after Close); ctx.Err() when ctx was cancelled; the
// frameLen error when the reply cannot be a valid frame.
func (h *Handle) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	b := h.bus
	h.requests.Add(1)
	probe, until := h.admit()
	if !probe && !until.IsZero() {
		h.skipped.Add(1)
		return nil, h.wrap(fmt.Errorf("%w until %s: %w", ErrBackoff, until.Format(time.TimeOnly), drivers.ErrTimeout))
	}
	reply, err := h.transact(ctx, req, frameLen)
	h.settle(probe, err)
	if err != nil {
		return nil, h.wrap(err)
	}
	if frameLen != nil {
		h.replies.Add(1)
	}
	h.lastSuccess.Store(b.clock.Now().UnixNano())
	b.stats.transactions.Add(1)
	return reply, nil
}

func (h *Handle) transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	b := h.bus
	if _, err := b.currentPort(); err != nil { // fail fast, without queueing
		return nil, err
	}
	if err := b.line.acquire(ctx); err != nil {
		return nil, ctxErr(ctx, 0)
	}
	defer b.line.release()
	p, err := b.currentPort()
	if err != nil {
		return nil, err
	}
	reply, err := b.transact(ctx, p, req, frameLen)
	if err == nil { // the common case, without the errors.As target escaping
		return reply, nil
	}
	var eio errIO
	if errors.As(err, &eio) {
		b.portGone(p, eio.err)
		return nil, fmt.Errorf("%w: %w", drivers.ErrBusDown, eio.err)
	}
	return reply, err
}

// Resync makes the bus discard stale input before its next transaction:
// the driver found the reply it got bad (drivers.Resyncer).
func (h *Handle) Resync() { h.bus.resync.Store(true) }

// admit decides whether a transaction may go on the line. It returns
// probe=true when this one is the probe after a back-off, and a non-zero
// until when the device is backing off and this one must be skipped.
func (h *Handle) admit() (probe bool, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures == 0 {
		return false, time.Time{}
	}
	if h.probing || h.bus.clock.Now().Before(h.backoffUntil) {
		return false, h.backoffUntil
	}
	h.probing = true
	return true, time.Time{}
}

// settle records the outcome of a transaction that went (or tried to go)
// on the line, and moves the back-off.
func (h *Handle) settle(probe bool, err error) {
	b := h.bus
	missed := false
	if err != nil { // the errors.As target escapes: not on every success
		var to errTimedOut
		missed = errors.As(err, &to) && to.kind == byBus
	}
	switch {
	case err == nil, errors.Is(err, context.Canceled):
	case errors.Is(err, drivers.ErrTimeout):
		h.timeouts.Add(1)
		b.stats.timeouts.Add(1)
	default:
		h.errors.Add(1)
		b.stats.errors.Add(1)
	}
	if err != nil {
		s := err.Error()
		h.lastError.Store(&s)
	}
	h.mu.Lock()
	if probe {
		h.probing = false
	}
	recovered, started := false, false
	switch {
	case err == nil && h.failures > 0:
		recovered = true
		h.failures, h.backoff, h.backoffUntil = 0, 0, time.Time{}
	case missed:
		h.failures++
		started = h.failures == 1
		if h.backoff == 0 {
			h.backoff = b.cfg.BackoffMin
		} else {
			h.backoff = min(2*h.backoff, b.cfg.BackoffMax)
		}
		h.backoffUntil = b.clock.Now().Add(h.backoff)
	}
	backoff := h.backoff
	h.mu.Unlock()
	switch {
	case recovered:
		b.log.Info("device answers again; back-off cleared", "device", h.name)
	case started:
		b.log.Warn("device missed its reply; backing off", "device", h.name, "backoff", backoff)
	}
}

func (h *Handle) wrap(err error) error {
	b := h.bus
	return fmt.Errorf("bus %s (%s): device %s: %w", b.cfg.Name, b.cfg.Port.Name, h.name, err)
}

// Device states, as Stats reports them.
const (
	DeviceOK      = "ok"
	DeviceBackoff = "backing_off"
	DeviceDown    = "down" // the bus's port is not open
)

// DeviceStats is a snapshot of one device's counters.
type DeviceStats struct {
	Name         string
	State        string // DeviceOK, DeviceBackoff, DeviceDown
	Requests     uint64 // Transact calls
	Replies      uint64 // complete replies received
	Timeouts     uint64 // missed replies
	Errors       uint64 // other failures: bus down, I/O errors, malformed replies
	Skipped      uint64 // transactions refused while backing off
	LastSuccess  time.Time
	LastError    string
	BackoffUntil time.Time // zero unless backing off
}

// Stats is a snapshot of a bus's counters.
type Stats struct {
	Name          string
	Port          string
	State         string // StateOpen, StateDown, StateClosed
	Transactions  uint64 // transactions that succeeded
	Timeouts      uint64 // transactions without a complete reply in time
	Errors        uint64 // other failed transactions (bus down, I/O, malformed reply)
	Reopens       uint64 // times the port was reopened after vanishing
	BytesSent     uint64
	BytesReceived uint64
	// EmptyReads counts reads that ended at serialport.ReadTimeout with no
	// data: the cost of waiting for silent devices.
	EmptyReads uint64
	// Flushes counts the times stale input was looked for (and discarded)
	// before a request; see Bus.needFlush for when that is skipped.
	Flushes uint64
	Busy    time.Duration // time the line carried transactions
	Waiting int           // callers queued for the line now
	Devices []DeviceStats // sorted by name
}

// Stats returns a snapshot of the bus's and its devices' counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	state := b.state
	hs := make([]*Handle, 0, len(b.devices))
	for _, h := range b.devices {
		hs = append(hs, h)
	}
	b.mu.Unlock()
	sort.Slice(hs, func(i, j int) bool { return hs[i].name < hs[j].name })
	s := Stats{
		Name:          b.cfg.Name,
		Port:          b.cfg.Port.Name,
		State:         state,
		Transactions:  b.stats.transactions.Load(),
		Timeouts:      b.stats.timeouts.Load(),
		Errors:        b.stats.errors.Load(),
		Reopens:       b.stats.reopens.Load(),
		BytesSent:     b.stats.bytesSent.Load(),
		BytesReceived: b.stats.bytesReceived.Load(),
		EmptyReads:    b.stats.emptyReads.Load(),
		Flushes:       b.stats.flushes.Load(),
		Busy:          time.Duration(b.stats.busyNanos.Load()),
		Waiting:       b.line.waiting(),
		Devices:       make([]DeviceStats, 0, len(hs)),
	}
	for _, h := range hs {
		s.Devices = append(s.Devices, h.stats(state))
	}
	return s
}

// Stats returns a snapshot of the device's counters.
func (h *Handle) Stats() DeviceStats {
	h.bus.mu.Lock()
	state := h.bus.state
	h.bus.mu.Unlock()
	return h.stats(state)
}

func (h *Handle) stats(busState string) DeviceStats {
	d := DeviceStats{
		Name:     h.name,
		State:    DeviceOK,
		Requests: h.requests.Load(),
		Replies:  h.replies.Load(),
		Timeouts: h.timeouts.Load(),
		Errors:   h.errors.Load(),
		Skipped:  h.skipped.Load(),
	}
	if ns := h.lastSuccess.Load(); ns != 0 {
		d.LastSuccess = time.Unix(0, ns)
	}
	if p := h.lastError.Load(); p != nil {
		d.LastError = *p
	}
	h.mu.Lock()
	if h.failures > 0 {
		d.State = DeviceBackoff
		d.BackoffUntil = h.backoffUntil
	}
	h.mu.Unlock()
	if busState != StateOpen {
		d.State = DeviceDown
	}
	return d
}
