// Package citysim simulates a city of gateways from one process: N gateways,
// each over its own MQTT connection, publishing contract-correct batches
// (payload's batch codec and topics) the way gatewayd does, for benchmarks,
// scale tests and load tests of cloudd (`devsim city`).
//
// Each simulated gateway
//   - connects with a Last Will (its retained status, "online":false) and
//     publishes its retained birth status, with its devices, on every
//     connection;
//   - numbers its messages with one per-gateway sequence, +1 per sealed
//     message across telemetry and events;
//   - sends report-by-exception parking traffic: each of its bays changes
//     (a car arrives or leaves) at random, on average every BayChange, and
//     only a change is reported; besides, a share of EventShare of its
//     records are access decisions (events) and inverter readings (pv,
//     telemetry);
//   - keeps every message until cloudd's acknowledgement on its ack topic
//     covers it, publishes again the ranges cloudd asks for, everything
//     unconfirmed after a reconnect, and the unconfirmed tail when
//     acknowledgements keep arriving without advancing for ConfirmWait (the same rules as
//     gateway/uplink, see docs/mqtt-payloads.md).
//
// Cost at scale: one scheduler goroutine seals and publishes every
// gateway's batches on one shared ticker (no timer per gateway);
// acknowledgements arrive on each connection's paho goroutines and only
// update the gateway's state under its mutex. What remains per gateway is
// paho's own: a TCP connection and a handful of goroutines (reader, writer,
// router, keep-alive), which is why the keep-alive defaults to a long 60 s.
// A tick that starts more than half a period late is counted (Totals.LateTicks):
// a run with late ticks was bound by the simulator, not by cloudd.
package citysim

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Defaults of Config, documented with the flags of devsim city.
const (
	// DefaultBayChange is the demo's rate: scripts/demo.sh runs devsim
	// parking with a mean stay of 40 min and a mean free time of 40 min
	// (1.5 arrivals per free bay per hour) at --speed 60, so a bay changes
	// every 40 s of wall-clock time on average.
	DefaultBayChange   = 40 * time.Second
	DefaultEventShare  = 0.1
	DefaultBatchEvery  = time.Second
	DefaultConfirmWait = 15 * time.Second
	DefaultKeepAlive   = 60 * time.Second
	DefaultSite        = "city"
	DefaultConnectPar  = 32
)

// Config configures a City.
type Config struct {
	// Brokers are MQTT broker URLs; gateway i connects to
	// Brokers[i%len(Brokers)].
	Brokers []string
	// Site is the site id of every gateway; gateways are gw-00001, gw-00002, …
	// unless IDs names them.
	Site     string
	Gateways int
	// IDs, when set, are the gateways' ids instead of gw-00001, …: one per
	// gateway ([a-z0-9-]{1,64}, distinct). Gateways may then be 0 (it
	// becomes len(IDs)); another number is an error. A benchmark uses it
	// to choose gateways that spread evenly over an engine's partitions.
	IDs []string
	// Devices is the number of parking bays per gateway.
	Devices int
	// BayChange is the mean time between two changes of one bay.
	BayChange time.Duration
	// EventShare is the share of records that are access events and
	// inverter readings rather than bay changes, in [0, 0.9]; 0 means
	// DefaultEventShare, a negative value none.
	EventShare float64
	// BatchEvery is how often each gateway seals what it observed into
	// messages (one telemetry and, when there were access decisions, one
	// events message).
	BatchEvery time.Duration
	// ConfirmWait: the unconfirmed tail is published again when an
	// acknowledgement arrives and acknowledgements have not advanced for
	// this long.
	ConfirmWait time.Duration
	KeepAlive   time.Duration
	// ClientPrefix starts every MQTT client id (default "citysim-{Site}").
	ClientPrefix string
	// ConnectParallel bounds the connections being set up at once.
	ConnectParallel int
	Seed            uint64
	Version         string // in the birth status
	Logger          *slog.Logger
}

func (c *Config) defaults() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("citysim: "+f, a...)) }
	if len(c.Brokers) == 0 {
		bad("no broker URL")
	}
	if c.Site == "" {
		c.Site = DefaultSite
	}
	if !payload.ValidID(c.Site) {
		bad("site %q: want [a-z0-9-]{1,64}", c.Site)
	}
	if len(c.IDs) > 0 {
		if c.Gateways == 0 {
			c.Gateways = len(c.IDs)
		} else if c.Gateways != len(c.IDs) {
			bad("gateways %d with %d ids: want as many ids as gateways (or gateways 0)", c.Gateways, len(c.IDs))
		}
		seen := make(map[string]int, len(c.IDs))
		for i, id := range c.IDs {
			if !payload.ValidID(id) {
				bad("id %d %q: want [a-z0-9-]{1,64}", i+1, id)
			} else if j, dup := seen[id]; dup {
				bad("id %d %q: the same as id %d", i+1, id, j+1)
			}
			seen[id] = i
		}
	}
	if c.Gateways < 1 || c.Gateways > 99999 {
		bad("gateways %d: want 1 to 99999", c.Gateways)
	}
	if c.Devices < 1 || c.Devices > 9999 {
		bad("devices %d: want 1 to 9999 per gateway", c.Devices)
	}
	def := func(p *time.Duration, d time.Duration, name string) {
		if *p == 0 {
			*p = d
		} else if *p < time.Millisecond {
			bad("%s %v: want at least 1ms", name, *p)
		}
	}
	def(&c.BayChange, DefaultBayChange, "bay change")
	def(&c.BatchEvery, DefaultBatchEvery, "batch period")
	def(&c.ConfirmWait, DefaultConfirmWait, "confirm wait")
	def(&c.KeepAlive, DefaultKeepAlive, "keep-alive")
	if c.KeepAlive < time.Second {
		bad("keep-alive %v: want at least 1s", c.KeepAlive)
	}
	switch {
	case c.EventShare == 0:
		c.EventShare = DefaultEventShare
	case c.EventShare < 0:
		c.EventShare = 0
	}
	if c.EventShare > 0.9 {
		bad("event share %v: want 0 to 0.9", c.EventShare)
	}
	if c.ClientPrefix == "" {
		c.ClientPrefix = "citysim-" + c.Site
	}
	if c.ConnectParallel <= 0 {
		c.ConnectParallel = DefaultConnectPar
	}
	if c.Version == "" {
		c.Version = "citysim"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// GatewayID is the default id of gateway i (0-based).
func GatewayID(i int) string { return fmt.Sprintf("gw-%05d", i+1) }

// id is the id of gateway i of the city: IDs[i], or GatewayID(i).
func (c *Config) id(i int) string {
	if len(c.IDs) > 0 {
		return c.IDs[i]
	}
	return GatewayID(i)
}
