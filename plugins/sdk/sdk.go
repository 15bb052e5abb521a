// Package sdk is what a device-plugin author imports. A plugin is a small
// program that implements Driver for one device type and calls Serve from
// main. The gateway starts the program, hands it the device's config and a
// Bus on which every request goes through the gateway's serial-bus arbiter,
// and polls it like a built-in driver. A plugin that crashes or hangs is
// restarted; it never takes the gateway down.
//
// The life of a plugin: Describe (what it is, which points it can write) →
// Configure (the device's spec, its config as JSON, the Bus and a Logger) →
// Poll, TakeEvents and Write, over and over. The SDK hides go-plugin's
// handshake, protocol versions and gRPC.
//
// Frame-length rules: the arbiter must know where a reply ends without
// calling back into the plugin, so a request carries a declarative
// FrameRule (fixed length, a length field, a delimiter; an optional start
// sequence and a maximum length) instead of a Go func.
package sdk

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
)

// Driver is a device plugin's implementation.
type Driver interface {
	// Describe says what the driver is. It is called before Configure.
	Describe() Description
	// Configure validates the device's config and keeps the bus handle and
	// logger; it should do no bus I/O. An error wrapping ErrInvalid says
	// the config is wrong (the gateway then does not retry quickly).
	Configure(ctx context.Context, env Env) error
	// Poll reads the device once. Records need no time: the gateway
	// stamps them. Errors wrapping ErrTimeout or ErrBusDown keep their
	// meaning in the gateway.
	Poll(ctx context.Context) ([]payload.Record, error)
	// TakeEvents returns and forgets the events raised since the last
	// call. Events carry their own time.
	TakeEvents() []payload.Record
	// Write sets a writable point. Unknown points and values out of range
	// get an error wrapping ErrInvalid that names them.
	Write(ctx context.Context, point string, v payload.Value) error
}

// Description is what Describe returns.
type Description struct {
	Name        string  // the device type, e.g. "guidance-display"
	Description string  // one line for `gatewayctl` and the gateway's startup table
	Measurement string  // the measurement of the driver's records, when fixed
	Version     string  // the plugin's own version
	Points      []Point // writable points
}

// Point is a writable point.
type Point struct {
	Name        string
	Type        payload.ValueType
	Description string
}

// Spec is the device's configuration as the gateway holds it.
type Spec struct {
	ID      string            // the device id, used as the `device` tag
	Unit    int               // the bus address, 0 when there is none
	Profile string            // a profile name, when the config gives one
	Tags    map[string]string // extra tags the gateway copies onto every record
}

// Env is what Configure gets.
type Env struct {
	Spec   Spec
	Config json.RawMessage // the plugin's own settings (a JSON object); decode with DecodeConfig
	Bus    Bus             // nil when the device is on no serial bus
	Logger *slog.Logger    // goes to the gateway's log with the device as an attribute
}

// Errors that keep their meaning across the process boundary.
var (
	ErrTimeout = drivers.ErrTimeout // the device did not answer in time
	ErrBusDown = drivers.ErrBusDown // the bus port is not open
	ErrInvalid = wire.ErrInvalid    // bad config, unknown point, value out of range
)

// Serve runs the driver as a plugin: it answers the gateway's handshake and
// serves until the gateway stops the process. Call it from main; it does
// not return while the gateway runs the plugin. Run by hand (not by the
// gateway), the program prints a message and exits with status 1.
//
// Serve runs the Go scheduler on one thread (GOMAXPROCS 1) unless the
// GOMAXPROCS environment variable says otherwise: a plugin's calls are
// short and I/O-bound, and a single thread answers them without waking a
// second one.
func Serve(d Driver) { serve(PluginSets(d)) }

// serve serves plugin sets as a plugin process.
func serve(sets map[int]plugin.PluginSet) {
	if os.Getenv("GOMAXPROCS") == "" {
		// A plugin waits on the gateway (and a device on its bus); one
		// thread spares it the cross-thread wake-ups that otherwise
		// double its call latency on a busy gateway.
		runtime.GOMAXPROCS(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: sets,
		GRPCServer:       grpcServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Level: hclog.Warn, Output: os.Stderr, JSONFormat: true,
		}),
	})
}

// grpcServer makes the plugin's gRPC server with the protocol's transport
// options.
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, wire.ServerOptions()...)...)
}

// PluginSets returns the go-plugin plugin sets that serve d, one per
// protocol version the SDK speaks. Serve uses it; test harnesses (see
// package plugintest) use it with go-plugin's in-process test connections.
func PluginSets(d Driver) map[int]plugin.PluginSet {
	return wire.PluginSets(&wire.DevicePlugin{Impl: func(b *plugin.GRPCBroker) pbDeviceServer {
		return newServer(d, b)
	}})
}
