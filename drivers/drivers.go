// Package drivers holds what every device driver shares: the handle a driver
// gets on its serial bus, the device interface the gateway polls, and the
// registry through which built-in drivers make themselves known by name.
//
// A driver never opens a port. It gets a Transactor from the gateway's bus
// arbiter, which owns the port, serializes the transactions of all devices
// on a multi-drop line and keeps the line's inter-frame silence. A driver
// registers a Factory from init(); the gateway picks it by the `driver` key
// of a device's config.
//
// A driver describes itself in its Info, so that nothing else names it: the
// config loader checks a device against what the driver says it needs (a
// bus and a unit range, a profile) and against its options schema;
// docs/config.md is generated from it; rules learn the field types of its
// records (Info.Fields). What the runtime branches on is typed and lives
// here: ErrCRC, which every protocol's CRC or checksum error wraps, and
// CardRead, the card read that OSDP and Wiegand readers give to a door.
// Everything a device needs from outside comes through Env.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/internal/suggest"
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

// Resyncer is a Transactor that discards stale input before a request
// only when it has reason to (the bus arbiter skips it right after a
// complete reply). A driver whose reply failed its own check (CRC,
// address, sequence) tells it so through Resync, and the next transaction
// on the bus starts from an empty input queue.
type Resyncer interface {
	Resync()
}

// Resync tells t that its last reply failed the driver's check, when t is
// a Resyncer; other Transactors are left alone.
func Resync(t Transactor) {
	if r, ok := t.(Resyncer); ok {
		r.Resync()
	}
}

// Errors that callers branch on.
var (
	// ErrTimeout means the device did not answer in time.
	ErrTimeout = errors.New("no reply before the deadline")
	// ErrBusDown means the bus's port is not open (unplugged adapter, missing device node).
	ErrBusDown = errors.New("bus port is not open")
	// ErrAbsent means the device is known not to be there now: a Modbus
	// gateway answered that the unit behind it did not respond. Errors that
	// wrap it also wrap ErrTimeout, and the driver backs off as the bus does
	// after missed replies.
	ErrAbsent = errors.New("device is absent")
	// ErrCRC means a reply's CRC or checksum does not match its bytes (line
	// noise, a wrong baud rate, two devices answering at once). Drivers wrap
	// it, so that the gateway counts CRC errors without knowing the protocol.
	ErrCRC = errors.New("crc mismatch")
)

// Device is one configured field device.
type Device interface {
	// Poll reads the device once and returns what it observed. Records need
	// no time: the gateway stamps them with the observation time. Nothing
	// changes a record's Tags or Fields map once Poll returned it (the
	// pipeline, the rules, the outbox and the status page only read them),
	// so a driver may return the same Tags map on every poll.
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

// Env is what the gateway hands a driver: everything a device needs from
// outside comes through it, so that a driver opens nothing itself.
type Env struct {
	Bus    Transactor // nil for devices not on a serial bus
	Logger *slog.Logger
	Now    func() time.Time
	// ProfilesDir is the site's folder of device profiles (the config's
	// top-level profiles_dir), "" when the site has none.
	ProfilesDir string
	// Shared holds what the devices of one gateway share (profiles loaded
	// once); nil makes each device load its own.
	Shared *Shared
	// OpenPin claims a GPIO line by name (GPIO17) or chip and line
	// (gpiochip0:17); nil when the gateway has no GPIO.
	OpenPin func(name string) (gpio.PinIO, error)
}

// Factory provisions a device: it validates the spec and builds the device
// from what Env hands it. It makes no transaction on a bus; claiming the
// GPIO lines it names through Env.OpenPin is the one thing it may acquire,
// and the device's Close releases it.
type Factory func(spec Spec, env Env) (Device, error)

// Shared holds values that the devices of one gateway share, each made
// once on first use (a driver's profiles read from the site's folder). It
// is safe for concurrent use; the values must be read-only.
type Shared struct {
	mu sync.Mutex
	m  map[string]*shared
}

type shared struct {
	once sync.Once
	v    any
	err  error
}

// Get returns the value under key, made by newValue on the first call. A nil
// Shared calls newValue every time.
func (s *Shared) Get(key string, newValue func() (any, error)) (any, error) {
	if s == nil {
		return newValue()
	}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*shared{}
	}
	e := s.m[key]
	if e == nil {
		e = &shared{}
		s.m[key] = e
	}
	s.mu.Unlock()
	e.once.Do(func() { e.v, e.err = newValue() })
	return e.v, e.err
}

// CardRead is a card presented at a reader, as a typed event: the gateway
// hands it to the reader's door. Data holds the card's bits, first bit
// first, in (Bits+7)/8 bytes.
type CardRead struct {
	Reader string // the reading device's id
	Data   []byte
	Bits   int
	Time   time.Time // zero: the time the gateway took it
}

// CardSource is implemented by devices that read cards (OSDP readers).
// After each Poll the gateway takes the card reads and hands them to the
// doors; the same reads also come as `reader` event records through
// EventSource, for the uplink and rules.
type CardSource interface {
	TakeCards() []CardRead
}

// FieldTypes gives the value types of the fields a driver's records carry,
// by measurement, for rules to check their conditions against.
type FieldTypes map[string]map[string]payload.ValueType

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

	// Bus, for a driver whose devices sit on a serial bus, says so and
	// gives the range of their units (bus addresses). Nil: no bus.
	Bus *Units
	// Profile says a device must name a profile.
	Profile bool
	// CardReader says the driver's devices read cards (they implement
	// CardSource), so that a door may name them as its readers.
	CardReader bool
	// Options describes the keys of a device's `options:`. The config
	// loader checks them with positions and "did you mean"; docs list
	// them. Nil leaves the options unchecked (a driver that does not
	// describe itself).
	Options schema.Schema
	// Example is a device entry in YAML that uses the driver, for docs
	// and for the tests that keep the schema and the driver in step.
	Example string
	// Fields, when set, gives the field types of a device's records
	// without building the device (a register-map profile's fields).
	Fields func(spec Spec, env Env) (FieldTypes, error)
}

// Units is the range of unit numbers (bus addresses) a bus driver accepts.
type Units struct{ Min, Max int }

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

// CheckOptions checks a spec's options against a driver's schema when the
// spec did not come through the config loader (which checks them with
// positions): every key known, with "did you mean", and the required ones
// there. Value types are left to the driver.
func CheckOptions(driver string, spec Spec, s schema.Schema) error {
	keys := make([]string, 0, len(spec.Options))
	for k := range spec.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := s.Field(k); !ok {
			hint := suggest.Hint(k, s.Keys(), "known")
			if hint == "" {
				hint = "the driver takes no options"
			}
			return fmt.Errorf("%s: device %s: unknown option %q (%s)", driver, spec.ID, k, hint)
		}
	}
	for _, f := range s {
		if _, ok := spec.Options[f.Key]; f.Required && !ok {
			return fmt.Errorf("%s: device %s: option %q is missing (%s)", driver, spec.ID, f.Key, f.Doc)
		}
	}
	return nil
}
