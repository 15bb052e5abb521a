// Package drivers holds what every device driver shares: the handle a driver
// gets on its serial bus, the device interface the gateway polls, and the
// registry through which built-in drivers make themselves known by name.
//
// A driver never opens a port. It gets a Transactor from the gateway's bus
// arbiter, which owns the port, serializes the transactions of all devices
// on a multi-drop line and keeps the line's inter-frame silence. A driver
// registers a Factory from init(); the gateway picks it by the `driver` key
// of a device's config.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
)

// FrameLenFunc tells the bus arbiter how long a reply is. Given the bytes
// received so far it returns the total frame length, or 0 when it needs more
// bytes to know. It returns an error when the prefix cannot start a valid
// reply (the arbiter then stops reading and reports it).
type FrameLenFunc func(prefix []byte) (int, error)

// Transactor is a device's handle on its serial bus.
type Transactor interface {
	// Transact writes req and reads one reply, whose end frameLen finds.
	// It waits its turn on the bus and returns ErrTimeout when no complete
	// reply arrives before the bus's transaction timeout or ctx's deadline.
	// A nil frameLen means no reply is expected (a broadcast).
	Transact(ctx context.Context, req []byte, frameLen FrameLenFunc) ([]byte, error)
}

// Errors that callers branch on.
var (
	// ErrTimeout means the device did not answer in time.
	ErrTimeout = errors.New("no reply before the deadline")
	// ErrBusDown means the bus's port is not open (unplugged adapter, missing device node).
	ErrBusDown = errors.New("bus port is not open")
)

// Device is one configured field device.
type Device interface {
	// Poll reads the device once and returns what it observed. Records need
	// no time: the gateway stamps them with the observation time.
	Poll(ctx context.Context) ([]payload.Record, error)
}

// EventSource is implemented by devices that also raise events (a fault bit
// that came on, a counter that went backwards). After each Poll the gateway
// takes the events and publishes them on the events stream, which the outbox
// never drops. Events carry their own time.
type EventSource interface {
	TakeEvents() []payload.Record
}

// Writer is implemented by devices with writable points (an LED colour, a
// power limit). Write refuses unknown and read-only points with an error
// that names them.
type Writer interface {
	Write(ctx context.Context, point string, v payload.Value) error
}

// Closer is implemented by devices that hold resources.
type Closer interface{ Close() error }

// Reporter is implemented by devices with state of their own worth showing
// on the gateway's status page (a plugin's process and restarts). Report
// must be cheap and must not block: the status page calls it on every
// request. Values must encode as JSON.
type Reporter interface {
	Report() map[string]any
}

// Spec is a device's configuration as the driver sees it.
type Spec struct {
	ID      string
	Driver  string
	Bus     string
	Unit    int               // bus address (Modbus unit id), 0 when not on a bus
	Profile string            // register map name, for drivers that use one
	Tags    map[string]string // extra tags copied onto every record (lot, zone, bay, ...)
	Options map[string]any    // driver-specific settings
}

// Env is what the gateway hands a driver.
type Env struct {
	Bus    Transactor // nil for devices not on a serial bus
	Logger *slog.Logger
	Now    func() time.Time
}

// Factory builds a device. It validates the spec and makes no I/O.
type Factory func(spec Spec, env Env) (Device, error)

// Info describes a registered driver.
type Info struct {
	Name        string
	Description string
	// Measurement is the measurement the driver's records use, when fixed
	// (for the birth message and the cloud's capacity counts).
	Measurement string
	New         Factory
	// Turnaround, for a driver of devices on a serial bus whose protocol
	// needs another silence before each request than Modbus RTU's t3.5,
	// gives that silence for a line of baud bits per second and
	// bitsPerChar bits per character. Nil means t3.5. A bus keeps the
	// longest silence that the drivers of its devices need, unless its
	// `turnaround` config key sets one.
	Turnaround func(baud, bitsPerChar int) time.Duration
}

var registry = struct {
	sync.RWMutex
	m map[string]Info
}{m: map[string]Info{}}

// Register makes a driver available by name. It is called from init().
func Register(info Info) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[info.Name]; dup {
		panic(fmt.Sprintf("drivers: %q registered twice", info.Name))
	}
	registry.m[info.Name] = info
}

// Lookup returns a registered driver.
func Lookup(name string) (Info, bool) {
	registry.RLock()
	defer registry.RUnlock()
	i, ok := registry.m[name]
	return i, ok
}

// Names lists registered drivers, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.m))
	for n := range registry.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
