package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/drivers/wiegand/wiegandsim"
	"github.com/luling-edge/luling/internal/testenv"
)

// A card at a door's Wiegand reader reaches the door as the same typed
// card read an OSDP reader gives (drivers.CardRead): a known card opens
// the strike, with no uplink.
func TestWiegandDoorOpensThroughTypedCardRead(t *testing.T) {
	dir := t.TempDir()
	src := fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
doors:
  - name: side
    wiegand: {d0: W0, d1: W1}
    strike: STRIKE
    unlock_time: 1s
`, testenv.FreePort(t), filepath.Join(dir, "outbox"))
	var vp pins
	gw, stop := runDoorGateway(t, dir, src, &vp)
	defer stop()
	ctx := context.Background()
	if _, err := gw.exec.Execute(ctx, "credentials.sync", map[string]any{"version": 1,
		"credentials": `[{"id":"bob","card":"7:4242"}]`}); err != nil {
		t.Fatalf("credentials.sync: %v", err)
	}
	d0, d1, strike := vp.get("W0"), vp.get("W1"), vp.get("STRIKE")
	testenv.WaitFor(t, 10*time.Second, "the wiegand lines to be watched", func() bool {
		return d0.Function() == "IN" && d1.Function() == "IN"
	})
	gen := wiegandsim.New(d0, d1)
	if err := gen.SendCard(ctx, wiegand.H10301, 7, 4242); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the strike to open for bob's card", func() bool { return strike.Last().Level == periphgpio.High })
	if err := gen.SendCard(ctx, wiegand.H10301, 7, 9999); err != nil { // unknown card
		t.Fatal(err)
	}
	var results []string
	testenv.WaitFor(t, 10*time.Second, "denied and granted access events in the outbox", func() bool {
		results = accessResults(t, gw)
		return len(results) >= 2
	})
	if len(results) != 2 || results[0] != "granted bob ok" || !strings.HasPrefix(results[1], "denied h:") {
		t.Errorf("access events %q: want bob granted, then the unknown card denied", results)
	}
}
