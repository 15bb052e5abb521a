package host_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func newRule(t *testing.T, mode string, edit func(*host.Options)) *host.RulePlugin {
	t.Helper()
	o := host.Options{
		Name: "guidance", Path: testRule.path, SHA256: testRule.sum,
		Logger:     slog.New(slog.DiscardHandler),
		Config:     map[string]any{"mode": mode},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}
	if edit != nil {
		edit(&o)
	}
	r, err := host.NewRule(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func bayRec(device string, n int64) payload.Record {
	return payload.Record{Measurement: "parking_bay", Tags: map[string]string{"device": device, "lot": "l1", "zone": "a", "bay": device},
		Fields: map[string]payload.Value{"occupied": payload.Bool(n%2 == 1), "n": payload.Int(n)}, Time: time.Unix(1700000000+n, 0).UTC()}
}

// emitted returns "device:n" of the echo records among actions, and the
// last write's value.
func emitted(t *testing.T, acts []rules.PluginAction) (echo []string, resumed bool, seen int64) {
	t.Helper()
	for _, a := range acts {
		switch a.Kind {
		case rules.ActEmit:
			echo = append(echo, a.Record.Tags["device"]+":"+a.Record.Fields["n"].String())
			resumed = resumed || a.Record.Fields["resumed"].Bool()
		case rules.ActWrite:
			if a.Device != "sign" || a.Point != "seen" {
				t.Errorf("write %s.%s", a.Device, a.Point)
			}
			seen = a.Value.Int()
		}
	}
	return echo, resumed, seen
}

// TestRulePluginEvaluates: records reach the plugin in order, its actions
// come back typed, and a tick is a call without records.
func TestRulePluginEvaluates(t *testing.T) {
	r := newRule(t, "echo", nil)
	acts, err := r.Evaluate(context.Background(), rules.PluginInput{Records: []payload.Record{bayRec("b1", 1), bayRec("b2", 2)}, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	echo, resumed, seen := emitted(t, acts)
	if strings.Join(echo, ",") != "b1:1,b2:2" || seen != 2 {
		t.Fatalf("actions %+v", acts)
	}
	// The first call of a new process is a resume: it carries what the
	// host remembers, which here is the same records.
	if !resumed {
		t.Error("first call not marked resumed")
	}
	acts, err = r.Evaluate(context.Background(), rules.PluginInput{Records: []payload.Record{bayRec("b1", 3)}, Now: time.Now()})
	if echo, resumed, seen = emitted(t, acts); err != nil || strings.Join(echo, ",") != "b1:3" || resumed || seen != 2 {
		t.Fatalf("second call: %v, %v, resumed %v, seen %d (%v)", echo, err, resumed, seen, acts)
	}
	now := time.Unix(1800000000, 0)
	acts, err = r.Evaluate(context.Background(), rules.PluginInput{Now: now, Tick: true})
	if err != nil || len(acts) != 2 || !acts[0].Event || acts[0].Record.Measurement != "tick" || acts[0].Record.Fields["at"].Int() != now.Unix() {
		t.Fatalf("tick: %+v, %v", acts, err)
	}
	if st := r.Stats(); st.State != host.Running || st.Describe.Name != "testrule" || st.Calls != 3 {
		t.Errorf("stats %+v", st)
	}
	if rep := r.Report(); rep["series"] != 2 || rep["type"] != "testrule" {
		t.Errorf("report %v", rep)
	}
}

// TestRulePluginResumesAfterCrash: the process dies on its third call; the
// host restarts it and the first call of the new process carries the last
// record of every series, so the plugin's state comes back.
func TestRulePluginResumesAfterCrash(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	r := newRule(t, "crash", func(o *host.Options) { o.Clock = clk })
	ctx := context.Background()
	for i, dev := range []string{"b1", "b2"} {
		if _, err := r.Evaluate(ctx, rules.PluginInput{Records: []payload.Record{bayRec(dev, int64(i))}, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pid := r.Stats().PID
	_, err := r.Evaluate(ctx, rules.PluginInput{Records: []payload.Record{bayRec("b3", 7)}, Now: time.Now()})
	if !errors.Is(err, host.ErrCrashed) {
		t.Fatalf("third call = %v, want ErrCrashed", err)
	}
	if ev := r.TakeEvents(); len(ev) != 1 || ev[0].Tags["rule"] != "guidance" || ev[0].Tags["code"] != "plugin_crashed" {
		t.Errorf("fault events %+v", ev)
	}
	// Within the 10 ms back-off (on the clock) the call is refused, but
	// its record is kept for the restarted process.
	in := rules.PluginInput{Records: []payload.Record{bayRec("b1", 9)}, Now: time.Now()}
	if _, err := r.Evaluate(ctx, in); !errors.Is(err, host.ErrBackoff) {
		t.Fatalf("call during the back-off = %v, want ErrBackoff", err)
	}
	clk.Advance(10 * time.Millisecond)
	acts, err := r.Evaluate(ctx, rules.PluginInput{Now: time.Now(), Tick: true})
	if err != nil {
		t.Fatal(err)
	}
	echo, resumed, seen := emitted(t, acts)
	if !resumed || seen != 3 || len(echo) != 3 || !strings.Contains(strings.Join(echo, ","), "b1:9") || !strings.Contains(strings.Join(echo, ","), "b3:7") {
		t.Fatalf("after restart: echo %v, resumed %v, seen %d: want the last record of b1, b2 and b3 again", echo, resumed, seen)
	}
	if st := r.Stats(); st.PID == pid || st.Restarts != 1 {
		t.Errorf("stats %+v", st)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("crashed process %d still alive", pid)
	}
}

// TestRulePluginRefusals: bad actions are dropped and counted; a hung call
// is cut; a device plugin is not a rule; a wrong checksum is refused.
func TestRulePluginRefusals(t *testing.T) {
	bad := newRule(t, "bad", nil)
	acts, err := bad.Evaluate(context.Background(), rules.PluginInput{Now: time.Now(), Tick: true})
	if len(acts) != 1 || acts[0].Kind != rules.ActAlert || acts[0].Message != "fine" || err == nil || !strings.Contains(err.Error(), `severity "loud"`) {
		t.Fatalf("bad actions: %+v, %v", acts, err)
	}
	if st := bad.Stats(); st.Rejected != 3 {
		t.Errorf("rejected %d, want 3", st.Rejected)
	}

	hung := newRule(t, "hang", func(o *host.Options) { o.CallTimeout = 200 * time.Millisecond })
	if _, err := hung.Evaluate(context.Background(), rules.PluginInput{Now: time.Now(), Tick: true}); !errors.Is(err, host.ErrCallTimeout) {
		t.Errorf("hung: %v", err)
	}

	dev := newRule(t, "echo", func(o *host.Options) { o.Path, o.SHA256 = testPlugin.path, testPlugin.sum })
	if _, err := dev.Evaluate(context.Background(), rules.PluginInput{Now: time.Now(), Tick: true}); err == nil || !strings.Contains(err.Error(), "serves no rule") {
		t.Errorf("device plugin as rule: %v", err)
	}
	if st := dev.Stats(); st.State != host.Disabled {
		t.Errorf("device plugin as rule: state %s, want disabled", st.State)
	}

	wrong := newRule(t, "echo", func(o *host.Options) { o.SHA256 = strings.Repeat("0", 64) })
	if _, err := wrong.Evaluate(context.Background(), rules.PluginInput{Now: time.Now(), Tick: true}); !errors.Is(err, host.ErrChecksum) {
		t.Errorf("wrong checksum: %v", err)
	}
	if _, err := host.NewRule(host.Options{Name: "x", Path: testRule.path, SHA256: testRule.sum, Bus: plugintest.BusFunc(echoBus)}); err == nil {
		t.Error("a rule with a bus was accepted")
	}
}

// TestRuleProgramAsDevice: a rule plugin declared as a device is refused
// with a message that says so.
func TestRuleProgramAsDevice(t *testing.T) {
	p := newPlugin(t, "echo", func(o *host.Options) { o.Path, o.SHA256 = testRule.path, testRule.sum })
	_, err := p.Poll(context.Background())
	if !errors.Is(err, host.ErrInvalid) || !strings.Contains(err.Error(), "serves no device (is it a rule plugin?)") {
		t.Fatalf("Poll = %v", err)
	}
	if st := p.Stats(); st.State != host.Disabled {
		t.Errorf("state %s, want disabled", st.State)
	}
}
