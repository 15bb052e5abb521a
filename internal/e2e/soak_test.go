package e2e

import (
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/firmware-config/config"
)

// TestSoak runs the whole system for LULING_SOAK_DURATION (default 30m)
// under a steady stream of occupancy changes while, at random moments, the
// broker is restarted or gatewayd is killed with SIGKILL. At the end every
// change must be in InfluxDB and cloudd must have seen no sequence gap.
// It runs only with LULING_SOAK=1 (make soak).
func TestSoak(t *testing.T) {
	if os.Getenv("LULING_SOAK") == "" {
		t.Skip("soak: set LULING_SOAK=1 (make soak)")
	}
	total := 30 * time.Minute
	if s := os.Getenv("LULING_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("LULING_SOAK_DURATION=%q: %v", s, err)
		}
		total = d
	}
	w := newWorld(t, worldOptions{bays: 32, buses: 2, poll: 200 * time.Millisecond})
	w.waitInitial()
	initial := w.initialState()
	rng := rand.New(rand.NewPCG(1, 2))
	var changes []change
	end := time.Now().Add(total)
	// The sleeps below are the soak's random script (traffic, outages,
	// kills); the checks afterwards judge what arrived, not when.
	for round := 0; time.Now().Before(end); round++ {
		stop := make(chan struct{})
		log := w.stream(100*time.Millisecond, stop)
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Second)
		switch rng.IntN(3) {
		case 0: // broker restart while changes go on
			w.broker.Stop()
			time.Sleep(time.Duration(1+rng.IntN(5)) * time.Second)
			w.broker.Start()
			time.Sleep(time.Second)
			close(stop)
			changes = append(changes, <-log...)
		case 1: // kill -9 of the gateway after its last change was committed
			close(stop)
			changes = append(changes, <-log...)
			time.Sleep(3*w.poll + config.DefaultTelemetryWindow) // polled, and out of the window

			w.gw.signal(syscall.SIGKILL)
			time.Sleep(time.Duration(rng.IntN(3)) * time.Second)
			w.restartGateway()
		default:
			close(stop)
			changes = append(changes, <-log...)
		}
		t.Logf("round %d: %d changes so far", round, len(changes))
	}
	pts := w.settle(2 * time.Minute)
	// Observation times are checked loosely: a soak runs on a busy machine.
	w.checkChanges(pts, initial, changes, 2*time.Second)
	w.checkLot()
	w.checkSequence(1)
}
