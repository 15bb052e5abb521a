package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
)

// The example rule plugin (zone-guidance) counts the free bays of zone
// north from three built-in Modbus bay sensors and writes the count to the
// zone's guidance display, itself a device plugin on the same RS-485 line:
// rule plugin → gateway → device plugin → bytes on the line, checked in the
// display's simulator. The zone filling up raises an alert that reaches
// InfluxDB; killing the rule plugin's process makes the gateway restart it,
// and the restarted plugin gets the bays' last records again, so the next
// change shows the right count.
func TestRulePluginDrivesSign(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	signPath, signSum := buildPlugin(t, "./plugins/examples/guidance-display")
	rulePath, ruleSum := buildPlugin(t, "./plugins/examples/zone-guidance")

	units := []byte{10, 11, 12}
	_, sensors, signs, pair, _ := sharedLine(t, "north", units)
	for _, u := range units {
		sensors[u].SetOccupied(false)
	}
	signs.Set(1, display.Status{Shown: 999, Brightness: 9, TempC: 18})

	const bayPoll = 250 * time.Millisecond
	var devs strings.Builder
	for _, u := range units {
		fmt.Fprintf(&devs, "  - {id: nb-%03d, driver: modbus, bus: north, unit: %d, profile: %s, poll: %s, tags: {lot: l1, zone: north, bay: \"%03d\"}}\n",
			u, u, modbussim.Ultrasonic.Profile(), bayPoll, u)
	}
	fmt.Fprintf(&devs, "  - {id: sign-north, driver: plugin, bus: north, unit: 1, poll: 500ms, tags: {lot: l1, zone: north},\n"+
		"     options: {path: %s, sha256: %q, config: {address: 1, max_count: 999}}}\n", signPath, signSum)
	rules := fmt.Sprintf(`rules:
  - name: guidance-north
    trigger: {measurement: parking_bay, tags: {zone: north}}
    plugin:
      path: %s
      sha256: %q
      call_timeout: 2s
      config:
        zones:
          north: {sign: sign-north, capacity: 3}
`, rulePath, ruleSum)
	w := newWorld(t, worldOptions{bays: 1, buses: 1, poll: bayPoll,
		moreBuses:   fmt.Sprintf("  - {name: north, port: %s, baud: 19200, parity: even, stop_bits: 1, timeout: 200ms}\n", pair.Path()),
		moreDevices: devs.String(), extra: rules})

	shows := func(want int, why string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := signs.Get(1)
			if !st.Blank && st.Shown == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the sign shows %d (blank %v) after 30 s, want %d", why, st.Shown, st.Blank, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	shows(3, "all bays free")
	sensors[10].SetOccupied(true)
	shows(2, "one car")
	sensors[11].SetOccupied(true)
	sensors[12].SetOccupied(true)
	shows(0, "zone full")

	// The full zone's alert reaches InfluxDB with the rule's name.
	deadline := time.Now().Add(30 * time.Second)
	for {
		series, err := w.influx.Query(w.db, `SELECT "message" FROM "alert" WHERE "rule"='guidance-north' AND "severity"='warning'`)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) == 1 && len(series[0].Values) >= 1 {
			if msg := fmt.Sprint(series[0].Rows()[0]["message"]); !strings.Contains(msg, "zone north is full") {
				t.Errorf("alert message %q", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no full-zone alert in InfluxDB: %+v", series)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Kill the rule plugin: the gateway restarts it at the next record and
	// hands it the bays' last records, so one car leaving shows 1, not 3.
	pids := pluginPIDs(t, w.gw.pid(), rulePath)
	if len(pids) != 1 {
		t.Fatalf("rule plugin processes %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sensors[11].SetOccupied(false)
	shows(1, "a car left after the rule plugin was killed")
	if now := pluginPIDs(t, w.gw.pid(), rulePath); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("rule plugin processes %v after the kill of %d", now, pids[0])
	}

	// The status page lists the rule with its evaluations.
	st := w.gatewayStatus()
	found := false
	for _, r := range anySlice(st["rules"]) {
		if m, _ := r.(map[string]any); m != nil && m["name"] == "guidance-north" {
			found = num(m["evaluations"]) > 0
		}
	}
	if !found {
		t.Errorf("status rules %v: want guidance-north with evaluations", st["rules"])
	}
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}
