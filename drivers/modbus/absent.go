package modbus

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers"
)

// Back-off of a unit that a Modbus gateway reports absent, as the bus
// backs off a unit that misses its replies.
const (
	AbsentBackoffMin = time.Second
	AbsentBackoffMax = 30 * time.Second
)

// IsGatewayAbsent reports whether err carries a Modbus gateway's exception
// 0x0A (gateway path unavailable) or 0x0B (gateway target device failed to
// respond): the unit behind the gateway is not there.
func IsGatewayAbsent(err error) bool {
	if err == nil {
		return false
	}
	var ex *ExceptionError
	return errors.As(err, &ex) && (ex.Code == 0x0A || ex.Code == 0x0B)
}

// Absence is the back-off of one unit that a Modbus gateway (a TCP/RTU
// converter, a data logger) reports absent: such a unit is skipped like one
// that misses its replies, for AbsentBackoffMin, then twice as long up to
// AbsentBackoffMax, and any answer of the unit clears it. The drivers of
// Modbus units share it. It is safe for concurrent use.
type Absence struct {
	who  string // "modbus: bay-17", the start of its errors
	unit byte
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex
	backoff time.Duration // 0: present
	until   time.Time
	cause   string // "unit 17 is absent behind the gateway (exception 0x0B: ...)"
}

// NewAbsence returns the back-off of unit; who starts its errors ("modbus:
// bay-17"); now and log may be nil.
func NewAbsence(who string, unit byte, now func() time.Time, log *slog.Logger) *Absence {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Absence{who: who, unit: unit, now: now, log: log}
}

// Skip returns an error wrapping drivers.ErrAbsent while the unit backs
// off: the caller sends nothing.
func (a *Absence) Skip() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := a.now(); a.backoff > 0 && now.Before(a.until) {
		return &absentError{msg: fmt.Sprintf("%s: %s; skipped, next try in %s", a.who, a.cause, a.until.Sub(now).Round(time.Millisecond))}
	}
	return nil
}

// Settle moves the back-off after a poll that ended with err and returns
// the poll's error: for exception 0x0A or 0x0B, one that says the unit is
// absent and wraps drivers.ErrAbsent, drivers.ErrTimeout and the
// exception; else err itself. A poll the unit answered (nil, or another
// exception) clears the back-off; other errors leave it.
func (a *Absence) Settle(err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil { // the common case, without the errors.As below
		if a.backoff > 0 {
			a.log.Info("modbus unit answers again", "was", a.cause)
			a.backoff, a.until, a.cause = 0, time.Time{}, ""
		}
		return nil
	}
	var ex *ExceptionError
	switch {
	case IsGatewayAbsent(err):
		errors.As(err, &ex)
		a.backoff = min(max(2*a.backoff, AbsentBackoffMin), AbsentBackoffMax)
		a.until = a.now().Add(a.backoff)
		a.cause = fmt.Sprintf("unit %d is absent behind the gateway (exception 0x%02X: %v)", a.unit, ex.Code, exceptionSentinel(ex.Code))
		if a.backoff == AbsentBackoffMin {
			a.log.Warn("modbus unit absent behind its gateway; backing off", "cause", a.cause)
		}
		return &absentError{msg: fmt.Sprintf("%s: %s; next try in %s", a.who, a.cause, a.backoff), err: err}
	case errors.As(err, &ex):
		if a.backoff > 0 {
			a.log.Info("modbus unit answers again", "was", a.cause)
		}
		a.backoff, a.until, a.cause = 0, time.Time{}, ""
	}
	return err
}

// Report adds the unit's state to a device's report: state "ok", or
// "absent" with the cause and the next try.
func (a *Absence) Report(r map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r["state"] = "ok"
	if a.backoff > 0 {
		r["state"], r["cause"], r["next_try"] = "absent", a.cause, a.until.Format(time.RFC3339)
	}
}

// absentError is a poll of a unit reported absent. It wraps
// drivers.ErrAbsent and drivers.ErrTimeout (the unit missed its reply,
// only behind a gateway), and the exception when there was one.
type absentError struct {
	msg string
	err error // the error with the *ExceptionError, nil for a skipped poll
}

func (e *absentError) Error() string { return e.msg }
func (e *absentError) Unwrap() []error {
	if e.err == nil {
		return []error{drivers.ErrAbsent, drivers.ErrTimeout}
	}
	return []error{drivers.ErrAbsent, drivers.ErrTimeout, e.err}
}
