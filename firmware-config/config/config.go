package config

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults filled in for keys the file leaves out. docs/config.md lists them.
const (
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "text"
	DefaultQoS            = 1
	DefaultKeepalive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultMaxInflight    = 32
	DefaultReconnectMax   = 60 * time.Second
	DefaultOutboxMaxBytes = 64 << 20
	DefaultCommitInterval = 10 * time.Millisecond
	// DefaultTelemetryWindow is how long telemetry alone waits to share one
	// commit: about one fsync a second whatever the device count.
	DefaultTelemetryWindow = time.Second
	DefaultBatchMaxRecords = 500
	DefaultStatusListen    = "127.0.0.1:9100"
	DefaultHealthInterval  = 30 * time.Second
	DefaultMaxSilence      = 5 * time.Minute
	DefaultBaud            = 19200
	DefaultDataBits        = 8
	DefaultParity          = "none"
	DefaultStopBits        = 1
	DefaultBusTimeout      = 200 * time.Millisecond
	DefaultBackoffMax      = 30 * time.Second
	DefaultPoll            = time.Second
)

// Bounds of a bus's turnaround. Two characters at 230400 baud take 87 µs.
const (
	MinTurnaround = 50 * time.Microsecond
	MaxTurnaround = time.Second
)

// Config is a loaded, checked gateway config with every default filled in.
type Config struct {
	File        string // the file it was loaded from
	Site        string
	Gateway     string
	Log         Log
	Uplink      Uplink
	Outbox      Outbox
	Status      Status
	Pipeline    Pipeline
	Buses       []Bus
	Devices     []Device // repeat blocks expanded, in file order
	ProfilesDir string   // "" when not set; relative paths are resolved against the file's folder
	Rules       []Rule   // the rules: list, decoded by package gateway/rules
	Doors       []Door   // access-controlled doors
	Lots        []Lot    // parking lots counted at their lanes
	Lanes       []Lane   // barrier gates at the lots' entrances and exits
	GPIO        GPIO     // where GPIO lines come from
	// GPIOLines are the GPIO lines the doors, lanes and devices use, in file
	// order: only the board (or the simulator) can tell whether they exist.
	GPIOLines []string
}

// GPIO selects where the gateway's GPIO lines come from: the board's
// (gpiochip, by name), or a simulator process for bench tests.
type GPIO struct {
	// Simulator is the unix socket of a GPIO simulator (package
	// drivers/gpio/simgpio, run by devsim gpio or devsim parking --doors); "" uses the board's lines.
	Simulator string
}

// Log selects the gateway's log output.
type Log struct {
	Level  string // debug, info, warn or error
	Format string // text or json
}

// SlogLevel returns Level as a slog.Level.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Uplink is the MQTT connection to the cloud.
type Uplink struct {
	Brokers        []string // tcp://host:port, ssl://, tls://, mqtt://, mqtts://, ws://, wss://
	ClientID       string   // default site-gateway
	Username       string
	Password       Secret // from password, or read from password_file
	PasswordFile   string // as configured (resolved against the file's folder)
	TLS            TLS
	QoS            byte // always 1 (MQTT contract)
	Keepalive      time.Duration
	ConnectTimeout time.Duration
	MaxInflight    int
	ReconnectMax   time.Duration // longest back-off between reconnect attempts
}

// TLS holds the uplink's TLS settings. Paths are resolved against the
// config file's folder.
type TLS struct {
	CA                 string
	Cert               string
	Key                string
	ServerName         string
	InsecureSkipVerify bool
}

// Set reports whether any TLS setting was given.
func (t TLS) Set() bool { return t != TLS{} }

// Outbox is the durable store of readings waiting for the broker.
type Outbox struct {
	Path           string // folder; resolved against the config file's folder
	MaxBytes       int64
	CommitInterval time.Duration
	// TelemetryWindow is how long telemetry alone may wait to share one
	// commit; an event commits at once and takes it along. 0 commits
	// telemetry like events.
	TelemetryWindow time.Duration
	BatchMaxRecords int
}

// Status is the local status and metrics HTTP server.
type Status struct {
	Listen string // host:port; "" when disabled
}

// Pipeline holds the report-by-exception settings shared by all devices.
type Pipeline struct {
	HealthInterval time.Duration // how often gateway_health is reported
	MaxSilence     time.Duration // default of Device.MaxSilence
}

// Bus is one serial line.
type Bus struct {
	Name       string
	Port       string // device node, e.g. /dev/ttyUSB0
	Baud       int
	DataBits   int
	Parity     string // none, even or odd
	StopBits   int
	Timeout    time.Duration // reply timeout of one transaction
	BackoffMax time.Duration // longest back-off of a device that stopped answering
	// Turnaround is the silence kept on the line before each request, as
	// configured; 0 when the file leaves it to the protocol of the bus's
	// devices (the gateway then asks their drivers).
	Turnaround time.Duration
	Line       int // line of the bus's entry in the file
}

// Device is one field device. Entries with a repeat block are expanded into
// one Device per value of n.
type Device struct {
	ID         string
	Driver     string
	Bus        string // "" for devices not on a serial bus
	Unit       int    // bus address; 0 when not set
	Profile    string
	Poll       time.Duration
	MaxSilence time.Duration      // report an unchanged value at least this often
	Deadband   map[string]float64 // field → smallest change that is reported
	Tags       map[string]string
	Options    map[string]any // driver-specific, as written
	Line       int            // line of the entry in the file (the repeat entry for expanded devices)
}

// Secret is a value that never prints: fmt, slog and %#v show [redacted]
// (or "" when empty). Reveal returns the value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns [redacted], or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Redacted returns a copy of c that holds no password, for printing or
// for handing to code that does not connect.
func (c *Config) Redacted() *Config {
	r := *c
	if r.Uplink.Password != "" {
		r.Uplink.Password = redacted
	}
	r.Uplink.Brokers = append([]string(nil), c.Uplink.Brokers...)
	r.Buses = append([]Bus(nil), c.Buses...)
	r.Devices = append([]Device(nil), c.Devices...)
	r.Rules = append([]Rule(nil), c.Rules...)
	return &r
}

// Summary is the one-line description gatewayctl validate prints.
func (c *Config) Summary() string {
	s := fmt.Sprintf("site %s, gateway %s, %s, %s", c.Site, c.Gateway,
		plural(len(c.Buses), "bus", "buses"), plural(len(c.Devices), "device", "devices"))
	if len(c.Doors) > 0 {
		s += ", " + plural(len(c.Doors), "door", "doors")
	}
	if len(c.Lanes) > 0 {
		s += ", " + plural(len(c.Lanes), "lane", "lanes")
	}
	if c.GPIO.Simulator != "" {
		s += ", GPIO simulated at " + c.GPIO.Simulator
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// String describes the config without secrets.
func (c *Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", c.File, c.Summary())
	fmt.Fprintf(&b, "log: level=%s format=%s\n", c.Log.Level, c.Log.Format)
	u := c.Uplink
	fmt.Fprintf(&b, "uplink: brokers=%s client_id=%s username=%s password=%s tls=%t qos=%d keepalive=%s connect_timeout=%s max_inflight=%d reconnect_max=%s\n",
		strings.Join(u.Brokers, ","), u.ClientID, u.Username, u.Password, u.TLS.Set(), u.QoS,
		u.Keepalive, u.ConnectTimeout, u.MaxInflight, u.ReconnectMax)
	fmt.Fprintf(&b, "outbox: path=%s max_bytes=%d commit_interval=%s telemetry_window=%s batch_max_records=%d\n",
		c.Outbox.Path, c.Outbox.MaxBytes, c.Outbox.CommitInterval, c.Outbox.TelemetryWindow, c.Outbox.BatchMaxRecords)
	fmt.Fprintf(&b, "status: listen=%q\n", c.Status.Listen)
	if c.GPIO.Simulator != "" {
		fmt.Fprintf(&b, "gpio: simulator=%s\n", c.GPIO.Simulator)
	}
	fmt.Fprintf(&b, "pipeline: health_interval=%s max_silence=%s\n", c.Pipeline.HealthInterval, c.Pipeline.MaxSilence)
	for _, x := range c.Buses {
		turnaround := "auto"
		if x.Turnaround > 0 {
			turnaround = x.Turnaround.String()
		}
		fmt.Fprintf(&b, "bus %s: port=%s baud=%d data_bits=%d parity=%s stop_bits=%d timeout=%s backoff_max=%s turnaround=%s\n",
			x.Name, x.Port, x.Baud, x.DataBits, x.Parity, x.StopBits, x.Timeout, x.BackoffMax, turnaround)
	}
	for _, d := range c.Devices {
		fmt.Fprintf(&b, "device %s: driver=%s bus=%s unit=%d profile=%s poll=%s max_silence=%s\n",
			d.ID, d.Driver, d.Bus, d.Unit, d.Profile, d.Poll, d.MaxSilence)
	}
	for _, r := range c.Rules {
		fmt.Fprintf(&b, "rule %s: line %d\n", r.Name, r.Line)
	}
	return b.String()
}
