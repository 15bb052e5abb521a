// Package e2e runs the whole system as it runs in the field: simulated
// bays speaking Modbus RTU on pseudo-terminals, the gatewayd binary,
// Mosquitto, the cloudd binary and InfluxDB, and checks what reaches
// InfluxDB against what the simulator did.
package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/firmware-config/config"
)

// The exact occupancy changes the simulator made appear in parking_bay with
// the right tags and observation times, and parking_lot counts match.
func TestParkingEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := newWorld(t, worldOptions{bays: 16, buses: 2, poll: 200 * time.Millisecond})
	w.waitInitial()
	initial := w.initialState()
	var changes []change
	for i := 0; i < 40; i++ {
		changes = append(changes, w.toggle((i*5)%16+1))
		time.Sleep(120 * time.Millisecond) // paces the traffic (a change every 120 ms); judges nothing
	}
	pts := w.settle(30 * time.Second)
	w.checkChanges(pts, initial, changes, 500*time.Millisecond)
	w.checkLot()
	w.checkSequence(2)
}

// The broker is stopped and restarted mid-stream: nothing is lost and there
// are no sequence gaps.
func TestBrokerRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := newWorld(t, worldOptions{bays: 16, buses: 2, poll: 200 * time.Millisecond})
	w.waitInitial()
	initial := w.initialState()
	stop := make(chan struct{})
	log := w.stream(100*time.Millisecond, stop)
	// The scenario's phases, while the stream changes bays; the checks
	// below judge what arrived, not when.
	time.Sleep(time.Second)
	w.broker.Stop()
	time.Sleep(2 * time.Second) // readings pile up in the outbox
	w.broker.Start()
	time.Sleep(time.Second)
	close(stop)
	changes := <-log
	pts := w.settle(30 * time.Second)
	w.checkChanges(pts, initial, changes, 500*time.Millisecond)
	w.checkLot()
	w.checkSequence(3)
}

// gatewayd is killed with SIGKILL while the broker is away and readings
// wait in its outbox, then restarted: nothing is lost, no sequence gaps,
// and the sequence goes on from where it was.
func TestGatewayKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := newWorld(t, worldOptions{bays: 16, buses: 2, poll: 200 * time.Millisecond})
	w.waitInitial()
	initial := w.initialState()
	var changes []change

	stop := make(chan struct{})
	log := w.stream(100*time.Millisecond, stop)
	// The scenario's phases, while the stream changes bays; the checks
	// below judge what arrived, not when.
	time.Sleep(time.Second)
	w.broker.Stop()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	changes = append(changes, <-log...)
	// Let the last change be polled and committed, then pull the plug.
	// (Three polls' time and one telemetry window, which telemetry may
	// wait before its fsync: /status has no "committed through" to wait
	// on, and the broker is down, so the cloud cannot tell either.)
	time.Sleep(3*w.poll + config.DefaultTelemetryWindow)
	before := w.cloudStats().Seq.LastSeq
	w.gw.signal(syscall.SIGKILL)
	w.broker.Start()
	w.restartGateway()

	stop = make(chan struct{})
	log = w.stream(100*time.Millisecond, stop)
	time.Sleep(time.Second) // a second of traffic after the restart
	close(stop)
	changes = append(changes, <-log...)

	pts := w.settle(30 * time.Second)
	w.checkChanges(pts, initial, changes, 500*time.Millisecond)
	w.checkLot()
	g := w.checkSequence(before + 1)
	if g.Seq.Resets != 0 {
		t.Errorf("the sequence restarted after kill -9 (%d resets): it must survive restarts", g.Seq.Resets)
	}
}

// A local rule's alert reaches InfluxDB's alert measurement with the rule,
// severity and device tags and the templated message.
func TestRuleAlertReachesInfluxDB(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	rules := `rules:
  - name: bay-taken
    trigger: {measurement: parking_bay}
    when: occupied
    actions:
      - alert: {severity: info, message: 'bay {{ tags.bay }} taken'}
`
	w := newWorld(t, worldOptions{bays: 4, buses: 1, poll: 200 * time.Millisecond, extra: rules})
	w.waitInitial()
	for bay := 1; bay <= 4; bay++ { // start from an empty lot
		if occ, _ := w.lot.Occupied(bay); occ {
			w.toggle(bay)
		}
	}
	for bay := 1; bay <= 4; bay++ { // the gateway has seen the empty lot
		w.waitBay(fmt.Sprintf("bay-%03d", bay), false)
	}
	at := time.Now()
	if err := w.lot.SetOccupied(3, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		series, err := w.influx.Query(w.db, `SELECT "message" FROM "alert" WHERE "rule"='bay-taken' AND "device"='bay-003' AND time >= `+
			strconv.FormatInt(at.UnixNano(), 10)+` GROUP BY *`)
		if err != nil {
			t.Fatal(err)
		}
		if len(series) == 1 && len(series[0].Values) >= 1 {
			s := series[0]
			if s.Tags["severity"] != "info" || s.Tags["site"] != "e2e" || s.Tags["gateway"] != "gw-1" {
				t.Errorf("alert tags %v", s.Tags)
			}
			if msg := s.Values[0][1]; msg != "bay 003 taken" {
				t.Errorf("alert message %q, want %q", msg, "bay 003 taken")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert for bay-003 in InfluxDB: %+v", series)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A command round-trips cloudd → broker → gatewayd → device → reply, and
// the same command id sent again does not run twice.
func TestCommandRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := newWorld(t, worldOptions{bays: 2, buses: 1, poll: 200 * time.Millisecond})
	w.waitInitial()
	// bay 1 is ultrasonic (it has an LED); wait for the gateway's birth to reach cloudd.
	deadline := time.Now().Add(20 * time.Second)
	for !w.cloudStats().Online {
		if time.Now().After(deadline) {
			t.Fatal("cloudd never saw the gateway online")
		}
		time.Sleep(100 * time.Millisecond)
	}
	send := func(body string) (int, map[string]any) {
		t.Helper()
		resp := w.callAPI("POST", "/api/v1/gateways/e2e/gw-1/commands", body)
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	cmd := `{"id":"e2e-led-1","name":"device.write","args":{"device":"bay-001","point":"led","value":"red"},"timeout":"15s"}`
	code, reply := send(cmd)
	if code != http.StatusOK || reply["status"] != "ok" {
		t.Fatalf("HTTP %d, reply %v", code, reply)
	}
	if led, _ := w.lot.LED(1); led != modbussim.LEDRed {
		t.Fatalf("LED register %d after the command, want red (%d)", led, modbussim.LEDRed)
	}
	// Someone changes the LED on site; the same command id must not run again.
	w.lot.Sensor(1).Unit().WriteHolding(modbussim.UltrasonicLED, modbussim.LEDYellow)
	code, reply = send(cmd)
	if code != http.StatusOK || reply["status"] != "duplicate" {
		t.Fatalf("resend: HTTP %d, reply %v; want status duplicate", code, reply)
	}
	if led, _ := w.lot.LED(1); led != modbussim.LEDYellow {
		t.Fatalf("LED register %d: the duplicate command ran again", led)
	}
	// A read-only point is refused with a clear error.
	code, reply = send(`{"name":"device.write","args":{"device":"bay-001","point":"occupied","value":true},"timeout":"15s"}`)
	if code != http.StatusOK || reply["status"] != "error" || !strings.Contains(fmt.Sprint(reply["message"]), "occupied") {
		t.Fatalf("read-only write: HTTP %d, reply %v", code, reply)
	}
}
