// Package hostspec is what the gateway config says of plugin devices: the
// driver name, the options and an example. It links nothing of the plugin
// host (hashicorp/go-plugin, gRPC), so that a gatewayd built without the
// host still checks and explains a config that uses plugins.
package hostspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/luling-edge/luling/internal/schema"
)

// DriverName is the `driver` value of plugin devices in the gateway config.
const DriverName = "plugin"

// DriverOptions are the keys of a plugin device's options.
var DriverOptions = schema.Schema{
	{Key: "path", Kind: schema.String, Required: true, Doc: "the plugin program"},
	{Key: "sha256", Kind: schema.String, Required: true, Doc: "the program's SHA-256, 64 hex digits (sha256sum prints it)",
		Valid: func(s string) error {
			if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%q is not 64 hex digits", s)
			}
			return nil
		}},
	{Key: "config", Kind: schema.Mapping, Doc: "the plugin's own settings, handed to it as JSON"},
	{Key: "call_timeout", Kind: schema.Duration, Default: "5s", Doc: "how long one call into the plugin may take"},
}

// Example is a plugin device entry, for docs and tests.
const Example = `- id: meter-1
  driver: plugin
  bus: rs485-1
  options:
    path: /opt/luling/plugins/acme-meter
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    call_timeout: 5s
    config: {scale: 0.1}`
