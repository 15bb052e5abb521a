package natsbus

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
)

func TestPartitionStateRoundTrip(t *testing.T) {
	opened := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	in := map[string]fleet.SeqState{
		"site-a/gw-1": {Next: 42, Gaps: []fleet.GapState{{First: 7, Last: 9, Opened: opened}}},
		"site-a/gw-2": {Next: 3},
	}
	out, bad := parsePartitionState(marshalPartitionState(in))
	if len(bad) > 0 || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v (errors %v), want %+v", out, bad, in)
	}
}

// A bad entry is left out and named; the good ones still load.
func TestPartitionStateBadEntries(t *testing.T) {
	out, bad := parsePartitionState([]byte(`{"s/g":{"next":5},"S/g":{"next":5},"s/h":{"next":5,"gaps":[{"first":9,"last":9}]},"nogw":{}}`))
	if len(out) != 1 || out["s/g"].Next != 5 {
		t.Fatalf("loaded %+v, want only s/g", out)
	}
	msg := ""
	for _, e := range bad {
		msg += e.Error() + "\n"
	}
	for _, want := range []string{`key "S/g": want site/gateway`, `key "nogw"`, "s/h: sequence state: gap 0 (9..9)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors %q lack %q", msg, want)
		}
	}
	if _, bad := parsePartitionState([]byte(`[1]`)); len(bad) != 1 || !strings.Contains(bad[0].Error(), "want a JSON object") {
		t.Errorf("array: %v", bad)
	}
}

func FuzzPartitionState(f *testing.F) {
	f.Add([]byte(`{"s/g":{"next":5,"gaps":[{"first":1,"last":2,"opened":"2026-12-04T12:00:00Z"}]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a/b":{"next":0},"c":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _ := parsePartitionState(b)
		again, bad := parsePartitionState(marshalPartitionState(out))
		if len(bad) > 0 || len(again) != len(out) {
			t.Fatalf("what loaded does not load again: %v", bad)
		}
	})
}
