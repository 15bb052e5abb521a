package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// FuzzRules feeds arbitrary YAML through decoding, compiling and one round
// of evaluation: bad input must give positioned errors, never a panic.
func FuzzRules(f *testing.F) {
	files, _ := filepath.Glob("../../firmware-config/examples/rules/*.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	for _, s := range []string{
		"", "rules:", "rules: 3", "rules: [1, [2], {a: b}]", "- a\n- b", "rules: &a [*a]",
		"rules:\n  - name: x\n    trigger: {measurement: parking_bay}\n    when: occupied &&\n    actions: [{alert: {message: x}}]\n",
		"rules:\n  - name: x\n    trigger: {every: 1s}\n    when: count_within(\"1s\") > 0 && virtual(\"v\") == nil\n    actions: [{set: {name: v, value: '{{ count_within(\"1s\") }}'}}]\n",
		"rules:\n  - name: x\n    trigger: {virtual: v}\n    actions: [{set: {name: v, value: '{{ value + 1 }}'}}]\n  - name: y\n    trigger: {measurement: parking_bay}\n    actions: [{set: {name: v, value: 1}}]\n",
		"rules:\n  - name: x\n    trigger: {device: '[', tags: {a: '*'}}\n    actions: [{write: {device: '{{', point: p, value: 1}}]\n",
		"rules:\n  - name: x\n    trigger: {measurement: parking_bay}\n    when: occupied\n    fire: level\n    actions: [{hold: {device: '{{ device }}', point: led, value: \"{{ occupied ? 'red' : 1 }}\"}}]\n",
		"rules:\n  - name: x\n    trigger: {event: fault}\n    actions: [{hold: {device: '{{ tags.device }}', point: '{{ state }}', value: '{{ 1/0 }}'}}]\n",
		"rules:\n  - name: x\n    trigger: {measurement: parking_bay}\n    when: 'fields.occupied ?? 1 / 0 > 0'\n    actions: [{emit: {measurement: alert, fields: {message: '{{ 1/0 }}'}}}]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 1<<14 {
			return
		}
		defs, err := ParseFile("f.yaml", []byte(src))
		if err != nil {
			checkErrors(t, err)
			return
		}
		clk := newFakeClock()
		e, err := New(defs, Options{Clock: clk, QueueLen: 8})
		if err != nil {
			checkErrors(t, err)
			return
		}
		recs := []payload.Record{bay("bay-1", "a", "1", true, t0), bay("bay-1", "a", "1", false, t0.Add(time.Second))}
		e.Observe(recs)
		e.ObserveEvents([]payload.Record{access("d1", "r1", "denied", t0)})
		e.Tick()
		clk.Advance(2 * time.Minute)
		e.Tick()
		e.Tick()
		_ = e.Stats()
	})
}

func checkErrors(t *testing.T, err error) {
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) == 0 {
		t.Fatalf("error is not a non-empty *Errors: %T %v", err, err)
	}
	for _, x := range errs.List {
		if x.File != "f.yaml" || x.Line < 1 || x.Msg == "" {
			t.Fatalf("error without a place: %+v", x)
		}
	}
}
