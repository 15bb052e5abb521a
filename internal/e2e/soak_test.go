package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/firmware-config/config"
)

// smallQueueBroker is Mosquitto with persistence (a restart keeps sessions
// and queues) but a small queue per client: while cloudd stalls, the
// broker drops what it already acknowledged to the gateway (PUBACK), as a
// production broker under pressure does. Only the gateway can send it
// again.
func smallQueueBroker(port int, dir string) string {
	return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location %s/
autosave_interval 1
max_inflight_messages 10
max_queued_messages 20
log_dest stdout
log_type error
`, port, dir)
}

// soakFaults are the faults a soak round injects while bays change.
var soakFaults = []string{"none", "broker restart", "kill -9", "broker drop after PUBACK"}

// TestSoak runs the whole system for LULING_SOAK_DURATION (default 30m)
// under a steady stream of occupancy changes while, at random moments, a
// fault strikes: the broker is restarted, gatewayd is killed with SIGKILL,
// or cloudd stalls (SIGSTOP) behind a broker with a small queue, which
// then drops messages it had acknowledged to the gateway. At the end every
// change must be in InfluxDB and cloudd must have seen no sequence gap; a
// table says, per fault, how many changes were produced and landed, and
// how many numbers cloudd counted declared lost or lost without a word.
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
	w := newWorld(t, worldOptions{bays: 32, buses: 2, poll: 200 * time.Millisecond, brokerConf: smallQueueBroker})
	w.waitInitial()
	initial := w.initialState()
	rng := rand.New(rand.NewPCG(1, 2))
	var changes []change
	byFault := map[string][]change{}
	end := time.Now().Add(total)
	// The sleeps below are the soak's random script (traffic, outages,
	// kills); the checks afterwards judge what arrived, not when.
	for round := 0; time.Now().Before(end); round++ {
		stop := make(chan struct{})
		log := w.stream(100*time.Millisecond, stop)
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Second)
		fault := rng.IntN(len(soakFaults))
		if round < len(soakFaults) {
			fault = (round + 1) % len(soakFaults) // every fault early, even in a short run
		}
		var got []change
		switch soakFaults[fault] {
		case "broker restart": // while changes go on
			w.broker.Stop()
			time.Sleep(time.Duration(1+rng.IntN(5)) * time.Second)
			w.broker.Start()
			time.Sleep(time.Second)
			close(stop)
			got = <-log
		case "kill -9": // of the gateway after its last change was committed
			close(stop)
			got = <-log
			time.Sleep(3*w.poll + config.DefaultTelemetryWindow) // polled, and out of the window
			w.gw.signal(syscall.SIGKILL)
			time.Sleep(time.Duration(rng.IntN(3)) * time.Second)
			w.restartGateway()
		case "broker drop after PUBACK": // cloudd stalls; its queue overflows
			if err := syscall.Kill(w.cloud.pid(), syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(3+rng.IntN(6)) * time.Second)
			if err := syscall.Kill(w.cloud.pid(), syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			close(stop)
			got = <-log
		default:
			close(stop)
			got = <-log
		}
		changes = append(changes, got...)
		byFault[soakFaults[fault]] = append(byFault[soakFaults[fault]], got...)
		t.Logf("round %d (%s): %d changes so far", round, soakFaults[fault], len(changes))
	}
	pts := w.settle(2 * time.Minute)
	g := w.cloudStats()
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%-26s %9s %7s\n", "fault", "produced", "landed")
	for _, f := range soakFaults {
		fmt.Fprintf(&tbl, "%-26s %9d %7d\n", f, len(byFault[f]), landed(pts, byFault[f], w.poll+2*time.Second))
	}
	fmt.Fprintf(&tbl, "%-26s %9d %7d\n", "all", len(changes), landed(pts, changes, w.poll+2*time.Second))
	fmt.Fprintf(&tbl, "cloudd: %d messages up to seq %d; declared lost %d, skipped %d, lost undeclared %d, open gaps %d",
		g.Messages, g.Seq.LastSeq, g.Seq.DeclaredLost, g.Seq.Skipped, g.Seq.Lost, g.Seq.GapsOpen)
	t.Logf("soak result:\n%s", tbl.String())
	// Observation times are checked loosely: a soak runs on a busy machine.
	w.checkChanges(pts, initial, changes, 2*time.Second)
	w.checkLot()
	w.checkSequence(1)
}

// landed counts the changes that have a point of their bay with their
// state observed within window after them.
func landed(pts map[int][]point, changes []change, window time.Duration) int {
	n := 0
	for _, c := range changes {
		for _, p := range pts[c.bay] {
			if lag := p.t.Sub(c.at); p.occupied == c.occupied && lag >= 0 && lag <= window {
				n++
				break
			}
		}
	}
	return n
}
