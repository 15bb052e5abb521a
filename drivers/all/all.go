// Package all links every built-in driver into a binary (import it for its
// side effect of registering them) and tells the config loader what this
// build knows: its drivers and its register-map profiles.
package all

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/luling-edge/luling/drivers"
	_ "github.com/luling-edge/luling/drivers/gpio"    // gpio: digital inputs and outputs (periph.io)
	"github.com/luling-edge/luling/drivers/modbus"    // modbus: Modbus RTU devices described by a register-map profile
	_ "github.com/luling-edge/luling/drivers/osdp"    // osdp: OSDP v2.2 card readers (Control Panel, Secure Channel)
	_ "github.com/luling-edge/luling/drivers/sunspec" // sunspec: SunSpec inverters and MPPT controllers over Modbus RTU
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/plugins/hostspec"
)

func init() {
	// plugin: a device driver in a separate process (hashicorp/go-plugin),
	// verified by its SHA-256 before it starts; see docs/plugins.md. The
	// host itself is linked only by binaries that call EnablePlugins.
	drivers.Register(drivers.Info{Name: hostspec.DriverName, Description: "device driver in an out-of-process plugin", New: newPlugin,
		Options: hostspec.DriverOptions, Example: hostspec.Example})
}

// ErrNoPluginHost is what a plugin device's factory returns in a binary
// built without the plugin host.
var ErrNoPluginHost = errors.New("this binary is built without the plugin host: plugin devices need gatewayd-full (go build -tags luling_full ./cmd/gatewayd)")

var pluginFactory drivers.Factory

// EnablePlugins makes plugin devices run through f (plugins/host.Factory).
// Call it from main or an init function, before any device is made. A
// binary that does not call it keeps go-plugin and gRPC out of its build;
// its config loader still checks plugin devices' options.
func EnablePlugins(f drivers.Factory) { pluginFactory = f }

// PluginsEnabled reports whether EnablePlugins was called.
func PluginsEnabled() bool { return pluginFactory != nil }

func newPlugin(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
	if pluginFactory == nil {
		return nil, fmt.Errorf("device %s: %w", spec.ID, ErrNoPluginHost)
	}
	return pluginFactory(spec, env)
}

// DriverRules returns what the config loader checks for each registered
// driver's devices, from what the drivers say of themselves.
func DriverRules() map[string]config.DriverRule {
	out := map[string]config.DriverRule{}
	for _, name := range drivers.Names() {
		info, _ := drivers.Lookup(name)
		r := config.DriverRule{Profile: info.Profile, CardReader: info.CardReader, Options: info.Options}
		if info.Bus != nil {
			r.Bus, r.UnitMin, r.UnitMax = true, info.Bus.Min, info.Bus.Max
		}
		out[name] = r
	}
	return out
}

// ConfigOptions returns the config loader options that check devices
// against this build: the registered drivers and what each says of itself
// (bus, units, profile, options), the profiles
// embedded in the binary, and the profiles a site keeps in profiles_dir
// (loaded, and so checked, the way the modbus driver loads them).
func ConfigOptions() ([]config.Option, error) {
	builtin, err := modbus.LoadProfiles(profiles.FS)
	if err != nil {
		return nil, fmt.Errorf("embedded profiles: %w", err)
	}
	return []config.Option{
		config.KnownDrivers(drivers.Names()...),
		config.DriverRules(DriverRules()),
		config.KnownProfiles(sortedNames(builtin)...),
		config.ProfilesInDir(func(dir string) ([]string, error) {
			more, err := modbus.LoadProfiles(os.DirFS(dir))
			if err != nil {
				return nil, err
			}
			return sortedNames(more), nil
		}),
	}, nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
