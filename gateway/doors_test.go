package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// pins hands out virtual GPIO lines by name.
type pins struct {
	mu sync.Mutex
	m  map[string]*vpin.Pin
}

func (p *pins) open(name string) (periphgpio.PinIO, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*vpin.Pin{}
	}
	if p.m[name] == nil {
		p.m[name] = vpin.New(name, len(p.m), nil)
	}
	return p.m[name], nil
}

func (p *pins) get(name string) *vpin.Pin {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[name]
}

// A card presented at an OSDP reader opens the door on the gateway alone:
// the strike is pulsed within the unlock time with no uplink at all; an
// unknown card is denied; both become access events.
func TestDoorDecidesWithUplinkDown(t *testing.T) {
	line, err := osdpsim.New(osdpsim.Config{Name: "doors", Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := line.Add(osdpsim.ReaderConfig{Addr: 1})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "ttyDoor"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); line.Serve(ctx, pair.Master) }()
	defer func() { cancel(); pair.Close(); <-served }()

	dir := t.TempDir()
	yaml := fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: ""}
buses:
  - {name: rs485-1, port: %s, baud: 9600, timeout: 300ms}
devices:
  - {id: reader-1, driver: osdp, bus: rs485-1, unit: 1, poll: 100ms}
doors:
  - name: lobby
    readers: [reader-1]
    strike: STRIKE
    unlock_time: 1s
`, testenv.FreePort(t), filepath.Join(dir, "outbox"), pair.Path())
	var vp pins
	gw, stop := runDoorGateway(t, dir, yaml, &vp)
	defer stop()

	res, err := gw.exec.Execute(ctx, "credentials.sync", map[string]any{"version": 1,
		"credentials": `[{"id":"alice","card":"12:3456"}]`})
	if err != nil {
		t.Fatalf("credentials.sync: %v (%v)", err, res)
	}
	strike := vp.get("STRIKE")
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, what, cond)
	}
	waitFor("the reader to come online", func() bool {
		for _, d := range gw.Snapshot().Devices {
			if d.ID == "reader-1" && d.State == "ok" {
				return true
			}
		}
		return false
	})

	presented := time.Now()
	reader.PresentWiegand26(12, 3456)
	waitFor("the strike to open", func() bool { return strike.Last().Level == periphgpio.High })
	opened := strike.Last().Time
	if lag := opened.Sub(presented); lag > time.Second {
		t.Errorf("strike opened %v after the card: want within the reader's poll and the decision", lag)
	}
	waitFor("the strike to close after unlock_time", func() bool { return strike.Last().Level == periphgpio.Low })
	if held := strike.Last().Time.Sub(opened); held < 900*time.Millisecond || held > 3*time.Second {
		t.Errorf("strike open for %v, want about the 1s unlock time", held)
	}
	if gw.Snapshot().Uplink.Connected {
		t.Fatal("the uplink was connected: the test proves nothing")
	}

	reader.PresentWiegand26(99, 1) // unknown
	var results []string
	waitFor("granted and denied access events in the outbox", func() bool {
		results = accessResults(t, gw)
		return strings.Contains(strings.Join(results, ","), "denied")
	})
	if len(results) != 2 || results[0] != "granted alice ok" ||
		!strings.HasPrefix(results[1], "denied h:") || !strings.HasSuffix(results[1], " unknown_credential") ||
		strings.Contains(results[1], "3456") || strings.Contains(results[1], "99:1") {
		t.Errorf("access events %q: want alice granted, then the unknown card denied under a hashed id", results)
	}
	if n := len(strike.History()); n != 3 { // initial low, open, closed: the unknown card did not open it
		t.Errorf("strike changed %d times: %v", n, strike.History())
	}
}

// runDoorGateway loads src as dir/gateway.yaml with the build's drivers
// and runs a gateway on it, its GPIO lines virtual pins of vp, until stop.
func runDoorGateway(t *testing.T, dir, src string, vp *pins) (gw *Gateway, stop func()) {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	gw, err = New(cfg, Options{Version: "test", Logger: quietLogger(), OpenPin: vp.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	return gw, func() { cancel(); <-done }
}

// accessResults reads the access events waiting in the outbox.
func accessResults(t *testing.T, gw *Gateway) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	msgs, _ := gw.ob.Pending(ctx, 0, 1000)
	var out []string
	for _, m := range msgs {
		b, err := payload.DecodeBatch(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			if r.Measurement == "access" {
				out = append(out, r.Tags["result"]+" "+r.Fields["credential"].Str()+" "+r.Fields["reason"].Str())
			}
		}
	}
	return out
}
