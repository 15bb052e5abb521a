package guidance_test

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/examples/zone-guidance/guidance"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func bayRecord(bay string, occupied bool) payload.Record {
	return payload.Record{Measurement: "parking_bay", Time: time.Now(),
		Tags:   map[string]string{"lot": "l1", "zone": "north", "bay": bay, "device": "bay-" + bay},
		Fields: map[string]payload.Value{"occupied": payload.Bool(occupied)}}
}

// TestThroughTheGatewaysProtocol runs the rule behind the gateway's plugin
// host (plugintest.StartRule: real gRPC, the host's checks of every
// action), as an integrator tests a rule plugin without a gateway.
func TestThroughTheGatewaysProtocol(t *testing.T) {
	r := plugintest.StartRule(t, guidance.New(), plugintest.Options{Name: "guidance-north",
		Config: map[string]any{"zones": map[string]any{"north": map[string]any{"sign": "sign-north", "capacity": 3}}}})
	ctx := context.Background()
	eval := func(recs ...payload.Record) []rules.PluginAction {
		t.Helper()
		acts, err := r.Evaluate(ctx, rules.PluginInput{Records: recs, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	}
	free := func(acts []rules.PluginAction) int64 {
		t.Helper()
		for _, a := range acts {
			if a.Kind == rules.ActWrite && a.Device == "sign-north" && a.Point == "free" {
				return a.Value.Int()
			}
		}
		t.Fatalf("no write to the sign in %+v", acts)
		return -1
	}
	if n := free(eval(bayRecord("1", true), bayRecord("2", true))); n != 1 {
		t.Errorf("free %d after two cars, want 1", n)
	}
	acts := eval(bayRecord("3", true))
	if n := free(acts); n != 0 {
		t.Errorf("free %d with the zone full, want 0", n)
	}
	full := false
	for _, a := range acts {
		full = full || (a.Kind == rules.ActAlert && a.Severity == "warning")
	}
	if !full {
		t.Errorf("no full alert in %+v", acts)
	}
	if st := r.Stats(); st.Rejected != 0 || st.Describe.Name != "zone-guidance" {
		t.Errorf("stats %+v", st)
	}
}
