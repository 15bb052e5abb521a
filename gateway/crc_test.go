package gateway

import (
	"fmt"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/osdp"
)

// The runtime counts CRC errors of every protocol through drivers.ErrCRC,
// without knowing which driver raised them.
func TestCRCErrorsOfEveryProtocol(t *testing.T) {
	f := osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdPoll}
	raw, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-2] ^= 0x01
	_, osdpErr := osdp.Decode(raw)
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"modbus", fmt.Errorf("modbus: bay-17 (unit 17 on rs485-1): read holding registers 0..5: %w", modbus.ErrCRC), true},
		{"osdp", fmt.Errorf("osdp: reader-1: %w", osdpErr), true},
		{"timeout", fmt.Errorf("modbus: bay-17: %w", drivers.ErrTimeout), false},
		{"bad reply", fmt.Errorf("modbus: bay-17: %w", modbus.ErrBadReply), false},
	} {
		if got := isCRC(c.err); got != c.want {
			t.Errorf("%s: isCRC(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
