package gateway

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// A bay sensor that reboots already occupied comes back with its LED reset
// to green and reports nothing new. The bay-led example holds the LED, so
// the gateway writes red again once the sensor answers (its fault event
// with state online), on the real Modbus line.
func TestLEDReassertedAfterSensorReboot(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Ultrasonic: 1, Seed: 5, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lot.Close()
	lot.Pause()
	rules, err := os.ReadFile("../firmware-config/examples/rules/bay-led.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	cfg := lotConfigWith(t, lot, dead, "    timeout: 300ms\n", "", 200*time.Millisecond, string(rules))
	gw, stop := startGateway(t, cfg)
	defer stop()
	waitLED := func(bay int, want uint16) {
		t.Helper()
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("bay %d's LED register to read %d", bay, want), func() bool {
			led, err := lot.LED(bay)
			return err == nil && led == want
		})
	}
	waitState := func(id string, ok bool) {
		t.Helper()
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%s ok=%v", id, ok), func() bool {
			for _, d := range gw.Snapshot().Devices {
				if d.ID == id {
					return (d.State == "ok") == ok
				}
			}
			return false
		})
	}
	lot.SetOccupied(2, true)
	waitLED(2, modbussim.LEDRed)
	unit := lot.Sensor(2).Unit()
	unit.SetOffline(true)
	waitState("bay-002", false)
	// The sensor reboots: its LED comes up green, the bay still occupied.
	unit.Update(func(r *modbussim.Registers) { r.HoldingRegisters[modbussim.UltrasonicLED] = modbussim.LEDGreen })
	unit.SetOffline(false)
	waitState("bay-002", true)
	waitLED(2, modbussim.LEDRed)
}
