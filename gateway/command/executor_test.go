package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestDeviceWriteRepliesAndEmits(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	rep := r.send("c1", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": "red"})
	if rep.Status != payload.ReplyOK || rep.Name != "device.write" || !rep.Executed.Equal(t0) {
		t.Fatalf("reply %+v", rep)
	}
	if got := resultJSON(rep); got != `{"device":"bay-1","point":"led","value":"red"}` {
		t.Errorf("result %s", got)
	}
	w := r.writers.all()
	if len(w) != 1 || w[0] != (write{"bay-1", "led", payload.String("red")}) {
		t.Errorf("writes %v", w)
	}
	ev := r.eventList()
	if len(ev) != 1 {
		t.Fatalf("events %v", ev)
	}
	e := ev[0]
	if e.Measurement != "command" || e.Tags["name"] != "device.write" || e.Tags["status"] != "ok" || e.Tags["source"] != "cloud" ||
		e.Fields["id"] != payload.String("c1") || e.Fields["latency_ms"].Type() != payload.TypeFloat {
		t.Errorf("event %+v", e)
	}
	// Integers stay integers, fractions are floats.
	r.send("c2", "device.write", map[string]any{"device": "bay-1", "point": "threshold_cm", "value": 140})
	r.send("c3", "device.write", map[string]any{"device": "bay-1", "point": "threshold_cm", "value": 140.5})
	w = r.writers.all()
	if w[1].value != payload.Int(140) || w[2].value != payload.Float(140.5) {
		t.Errorf("numbers written as %v, %v", w[1].value, w[2].value)
	}
}

func TestDuplicateRunsOnce(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	b := body("dup-1", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": "green"}, time.Minute)
	r.exec.Handle(topic("dup-1"), b)
	first := r.reply("dup-1")
	r.exec.Handle(topic("dup-1"), b) // broker redelivery
	second := r.reply("dup-1")
	if first.Status != payload.ReplyOK || second.Status != payload.ReplyDuplicate {
		t.Fatalf("statuses %s, %s", first.Status, second.Status)
	}
	orig, _ := second.Result["original"].(map[string]any)
	if orig["status"] != "ok" || orig["id"] != "dup-1" {
		t.Errorf("duplicate reply's original: %v", second.Result)
	}
	if n := len(r.writers.all()); n != 1 {
		t.Errorf("written %d times, want once", n)
	}
	if s := r.exec.Stats(); s.Duplicates != 1 || s.Executed != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestExpiredDoesNotRun(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	r.clock.Advance(time.Minute + time.Millisecond)
	rep := r.send("late", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": "red"})
	if rep.Status != payload.ReplyExpired || !strings.Contains(rep.Message, "expired at 2026-11-25T19:01:00Z") {
		t.Fatalf("reply %+v", rep)
	}
	// Sent again, still expired, still not run.
	rep = r.send("late", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": "red"})
	if rep.Status != payload.ReplyExpired {
		t.Fatalf("second reply %+v", rep)
	}
	if w := r.writers.all(); len(w) != 0 {
		t.Errorf("expired command wrote %v", w)
	}
	if ev := r.eventList(); len(ev) != 2 || ev[0].Tags["status"] != "expired" {
		t.Errorf("events %v", ev)
	}
}

func TestIDsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	r1 := newRig(t, dir, nil)
	b := body("r-1", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": "red"}, time.Hour)
	r1.exec.Handle(topic("r-1"), b)
	if rep := r1.reply("r-1"); rep.Status != payload.ReplyOK {
		t.Fatal(rep)
	}
	r1.stop()

	r2 := newRig(t, dir, nil)
	r2.exec.Handle(topic("r-1"), b)
	rep := r2.reply("r-1")
	if rep.Status != payload.ReplyDuplicate {
		t.Fatalf("after restart: %+v", rep)
	}
	if orig, _ := rep.Result["original"].(map[string]any); orig["status"] != "ok" {
		t.Errorf("original %v", rep.Result)
	}
	if w := r2.writers.all(); len(w) != 0 {
		t.Errorf("ran again after restart: %v", w)
	}
	r2.stop()

	// A command that was started but whose result never got recorded (a
	// crash mid-run), followed by a record torn by the crash.
	f, err := os.OpenFile(filepath.Join(dir, command.StoreFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"crashed","exp":"2026-11-25T20:00:00Z"}` + "\n" + `{"id":"torn","ex`)
	f.Close()
	r3 := newRig(t, dir, nil)
	r3.exec.Handle(topic("crashed"), body("crashed", "ping", nil, time.Hour))
	if rep := r3.reply("crashed"); rep.Status != payload.ReplyDuplicate || !strings.Contains(rep.Message, "result is unknown") {
		t.Errorf("crashed command: %+v", rep)
	}
	if rep := r3.send("torn", "ping", nil); rep.Status != payload.ReplyOK {
		t.Errorf("torn record's id should be unknown (it never ran): %+v", rep)
	}
	if rep := r3.send("r-1", "ping", nil); rep.Status != payload.ReplyDuplicate {
		t.Errorf("r-1 forgotten after a torn record: %+v", rep)
	}
}

func TestReloadRefusedListsErrors(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	calls := 0
	r.reload = func(context.Context) error {
		calls++
		return errors.Join(
			errors.New(`gateway.yaml:12: device "bay-9": unit 300 is out of range, want 1..247`),
			errors.New(`gateway.yaml:20: bus "rs485-3": not defined`),
		)
	}
	rep := r.send("rl-1", "config.reload", nil)
	if calls != 1 || rep.Status != payload.ReplyError || !strings.Contains(rep.Message, "running one is kept") {
		t.Fatalf("reply %+v (calls %d)", rep, calls)
	}
	errs, _ := rep.Result["errors"].([]any)
	if len(errs) != 2 || !strings.Contains(errs[0].(string), "unit 300") || !strings.Contains(errs[1].(string), "rs485-3") || rep.Result["reloaded"] != false {
		t.Errorf("result %s", resultJSON(rep))
	}
	r.reload = func(context.Context) error { return nil }
	if rep := r.send("rl-2", "config.reload", nil); rep.Status != payload.ReplyOK || rep.Result["reloaded"] != true {
		t.Errorf("good reload: %+v", rep)
	}
}

func TestMalformedCommands(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	valid := `"issued":"2026-11-25T19:00:00Z","expires":"2026-11-25T19:05:00Z"`
	cases := []struct {
		name, body, want string
		status           payload.ReplyStatus
	}{
		{"not json", `{"v":1,`, "truncated JSON", payload.ReplyError},
		{"array", `[1,2]`, "want an object", payload.ReplyError},
		{"no version", `{"id":"m","name":"ping",` + valid + `}`, `missing "v"`, payload.ReplyError},
		{"version 2", `{"v":2,"id":"m","name":"ping",` + valid + `}`, `"v" is 2: want 1`, payload.ReplyError},
		{"version string", `{"v":"1","id":"m","name":"ping",` + valid + `}`, `"v" is a JSON string: want the number 1`, payload.ReplyError},
		{"unknown key", `{"v":1,"id":"m","name":"ping","prio":3,` + valid + `}`, `unknown key "prio"`, payload.ReplyError},
		{"id mismatch", `{"v":1,"id":"other","name":"ping",` + valid + `}`, `differs from the topic's id "m"`, payload.ReplyError},
		{"bad name", `{"v":1,"id":"m","name":"Open Door",` + valid + `}`, `"name" "Open Door"`, payload.ReplyError},
		{"args not object", `{"v":1,"id":"m","name":"ping","args":[1],` + valid + `}`, `"args"`, payload.ReplyError},
		{"no expiry", `{"v":1,"id":"m","name":"ping","issued":"2026-11-25T19:00:00Z"}`, `missing "expires"`, payload.ReplyError},
		{"bad time", `{"v":1,"id":"m","name":"ping","issued":"yesterday","expires":"2026-11-25T19:05:00Z"}`, `"issued" "yesterday": want an RFC 3339 time`, payload.ReplyError},
		{"expires first", `{"v":1,"id":"m","name":"ping","issued":"2026-11-25T19:05:00Z","expires":"2026-11-25T19:00:00Z"}`, `is not after "issued"`, payload.ReplyError},
		{"too long", `{"v":1,"id":"m","name":"ping","issued":"2026-11-25T19:00:00Z","expires":"2026-11-27T19:00:00Z"}`, `want at most 24h0m0s`, payload.ReplyError},
		{"trailing", `{"v":1,"id":"m","name":"ping",` + valid + `}{}`, "data after the JSON object", payload.ReplyError},
		{"unknown name", `{"v":1,"id":"m","name":"door.open",` + valid + `}`, `no command "door.open" on this gateway; want one of config.reload, device.write, ping, relay.pulse, rule.disable, rule.enable`, payload.ReplyUnknown},
		{"missing arg", `{"v":1,"id":"m","name":"device.write","args":{"device":"bay-1","point":"led"},` + valid + `}`, `missing argument "value"`, payload.ReplyError},
		{"extra arg", `{"v":1,"id":"m","name":"device.write","args":{"device":"bay-1","point":"led","value":1,"unit":3},` + valid + `}`, `unknown argument "unit": want device, point, value`, payload.ReplyError},
		{"arg type", `{"v":1,"id":"m","name":"device.write","args":{"device":7,"point":"led","value":[1]},` + valid + `}`, `argument "device" is the number 7: want a non-empty string; argument "value" is a JSON array`, payload.ReplyError},
		{"unknown device", `{"v":1,"id":"m","name":"device.write","args":{"device":"bay-99","point":"led","value":1},` + valid + `}`, `device "bay-99" is not configured`, payload.ReplyError},
		{"pulse too long", `{"v":1,"id":"m","name":"relay.pulse","args":{"device":"gate-1","point":"relay","on":true,"off":false,"duration":"2m"},` + valid + `}`, `argument "duration" is "2m": want a duration from 10ms to 1m0s`, payload.ReplyError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r.exec.Handle(topic("m"), []byte(c.body))
			rep := r.reply("m")
			if rep.Status != c.status || !strings.Contains(rep.Message, c.want) {
				t.Errorf("reply %s %q, want %s containing %q", rep.Status, rep.Message, c.status, c.want)
			}
		})
	}
	if w := r.writers.all(); len(w) != 0 {
		t.Errorf("malformed commands wrote %v", w)
	}
	// Refused commands are not remembered: the corrected one runs.
	if rep := r.send("m", "device.write", map[string]any{"device": "bay-1", "point": "led", "value": 1}); rep.Status != payload.ReplyOK {
		t.Errorf("corrected command: %+v", rep)
	}
	// A topic without a usable id gets no reply, only an event.
	before := len(r.eventList())
	r.exec.Handle("gw/v1/lot-a/gw-1/cmd/a+b", []byte(`{}`))
	r.exec.Handle("gw/v1/lot-a/gw-1/cmd/x", nil) // a cleared retained command: ignored
	r.send("after", "ping", nil)                 // replies stay in order, so none came for the two above
	if ev := r.eventList(); len(ev) != before+2 || ev[before].Tags["name"] != "invalid" {
		t.Errorf("events %v", ev[before:])
	}
}

func TestRelayPulse(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	r.exec.Handle(topic("p1"), body("p1", "relay.pulse", map[string]any{"device": "gate-1", "point": "relay", "on": true, "off": false, "duration": 3}, time.Minute))
	if w := <-r.writers.wrote; w.value != payload.Bool(true) {
		t.Fatalf("first write %v", w)
	}
	r.clock.BlockUntil(1) // the pulse waits on the clock
	select {
	case w := <-r.writers.wrote:
		t.Fatalf("off written before the pulse ended: %v", w)
	default:
	}
	r.clock.Advance(3 * time.Second)
	rep := r.reply("p1")
	if rep.Status != payload.ReplyOK || rep.Result["duration_ms"] != json.Number("3000") {
		t.Fatalf("reply %+v", rep)
	}
	w := r.writers.all()
	if len(w) != 2 || w[1] != (write{"gate-1", "relay", payload.Bool(false)}) {
		t.Errorf("writes %v", w)
	}
	// A failing "on" still writes "off".
	r.writers.mu.Lock()
	r.writers.fail["door"] = errors.New("modbus: gate-1: exception 2 (illegal data address)")
	r.writers.mu.Unlock()
	rep = r.send("p2", "relay.pulse", map[string]any{"device": "gate-1", "point": "door", "on": 1, "off": 0, "duration": "500ms"})
	if rep.Status != payload.ReplyError || !strings.Contains(rep.Message, "illegal data address") {
		t.Errorf("failed pulse: %+v", rep)
	}
}

func TestRulesAndPing(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	if rep := r.send("d1", "rule.disable", map[string]any{"rule": "night-lights"}); rep.Status != payload.ReplyOK {
		t.Fatalf("%+v", rep)
	}
	if r.rules.on["night-lights"] {
		t.Error("rule still enabled")
	}
	if rep := r.send("d2", "rule.enable", map[string]any{"rule": "nope"}); rep.Status != payload.ReplyError || !strings.Contains(rep.Message, `rule "nope": no such rule`) {
		t.Errorf("%+v", rep)
	}
	if rep := r.send("d3", "ping", nil); rep.Status != payload.ReplyOK || rep.Result["time"] != "2026-11-25T19:00:00Z" {
		t.Errorf("%+v", rep)
	}
}

func TestLocalCommand(t *testing.T) {
	r := newRig(t, t.TempDir(), nil)
	ctx := context.Background()
	if err := r.exec.Command(ctx, "device.write", map[string]string{"device": "bay-1", "point": "led", "value": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := r.exec.Command(ctx, "device.write", map[string]string{"device": "bay-1", "point": "mode", "value": "auto"}); err != nil {
		t.Fatal(err)
	}
	w := r.writers.all()
	if len(w) != 2 || w[0].value != payload.Int(2) || w[1].value != payload.String("auto") {
		t.Errorf("writes %v", w)
	}
	if err := r.exec.Command(ctx, "door.open", nil); !errors.Is(err, command.ErrUnknown) {
		t.Errorf("unknown local command: %v", err)
	}
	ev := r.eventList()
	if len(ev) != 3 || ev[0].Tags["source"] != "local" || ev[2].Tags["status"] != "unknown" {
		t.Errorf("events %v", ev)
	}
}

func TestIDLogBounded(t *testing.T) {
	r := newRig(t, t.TempDir(), func(o *command.Options) { o.MaxIDs = 3 })
	for _, id := range []string{"a", "b", "c"} {
		if rep := r.send(id, "ping", nil); rep.Status != payload.ReplyOK {
			t.Fatal(rep)
		}
	}
	// A fourth unexpired id would push out one that may still be redelivered.
	rep := r.send("d", "ping", nil)
	if rep.Status != payload.ReplyError || !strings.Contains(rep.Message, "too many unexpired command ids") {
		t.Fatalf("fourth: %+v", rep)
	}
	// An hour after they expired, the old ids are forgotten.
	r.clock.Advance(time.Minute + time.Hour + time.Second)
	r.exec.Handle(topic("e"), body("e", "ping", nil, 2*time.Hour))
	if rep := r.reply("e"); rep.Status != payload.ReplyOK {
		t.Fatalf("after expiry: %+v", rep)
	}
}

// A reply that cannot be published is retried after 250 ms, 500 ms, 1 s …
// on the clock, and given up once the next retry would end past
// ReplyRetry.
func TestReplyRetriedWithBackoffOnTheClock(t *testing.T) {
	tried := make(chan struct{}, 16)
	r := newRig(t, t.TempDir(), func(o *command.Options) {
		o.ReplyRetry = 2 * time.Second
		o.Reply = func(context.Context, string, []byte) error {
			tried <- struct{}{}
			return errors.New("uplink: not connected")
		}
	})
	r.exec.Handle(topic("r1"), body("r1", "ping", nil, time.Minute))
	<-tried
	for _, wait := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		r.clock.BlockUntil(1)
		r.clock.Advance(wait - time.Nanosecond)
		if n := r.clock.Waiters(); n != 1 || len(tried) != 0 {
			t.Fatalf("retried before its %v wait ended", wait)
		}
		r.clock.Advance(time.Nanosecond)
		<-tried
	}
	// 1.75 s in: a 2 s wait would end past the 2 s ReplyRetry.
	testenv.WaitFor(t, 20*time.Second, "the reply to be given up", func() bool { return r.exec.Stats().ReplyErrors == 1 })
	if len(tried) != 0 || r.clock.Waiters() != 0 {
		t.Errorf("%d more attempts, %d waiters after giving up", len(tried), r.clock.Waiters())
	}
}
