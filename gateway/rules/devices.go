package rules

import (
	"context"
	"fmt"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
)

// Devices routes the engine's writes to the gateway's drivers by device id.
// It implements Writer.
type Devices map[string]drivers.Device

var _ Writer = Devices(nil)

// Write writes v to point of the device with id device.
func (m Devices) Write(ctx context.Context, device, point string, v payload.Value) error {
	d, ok := m[device]
	if !ok {
		return fmt.Errorf("rules: write %s.%s: device %q is not configured", device, point, device)
	}
	w, ok := d.(drivers.Writer)
	if !ok {
		return fmt.Errorf("rules: write %s.%s: device %q has no writable points", device, point, device)
	}
	return w.Write(ctx, point, v)
}
