package host_test

import (
	"context"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func TestFactory(t *testing.T) {
	spec := drivers.Spec{ID: "dev-9", Driver: host.DriverName, Unit: 4, Options: map[string]any{
		"path": testPlugin.path, "sha256": testPlugin.sum, "call_timeout": "2s",
		"config": map[string]any{"mode": "echo"},
	}}
	d, err := host.Factory(spec, drivers.Env{Bus: plugintest.BusFunc(echoBus)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.(drivers.Closer).Close()
	recs, err := d.Poll(context.Background())
	if err != nil || len(recs) != 1 || recs[0].Tags["device"] != "dev-9" || recs[0].Fields["reply"].Str() != "pong" {
		t.Fatalf("Poll = %+v, %v", recs, err)
	}
	for _, c := range []struct {
		opts map[string]any
		want string
	}{
		{map[string]any{"sha256": testPlugin.sum}, `option "path" is missing`},
		{map[string]any{"path": 3, "sha256": testPlugin.sum}, `option "path" is a int, want a string`},
		{map[string]any{"path": "/x", "sha256": testPlugin.sum, "confg": 1}, `unknown option "confg" (did you mean config?)`},
		{map[string]any{"path": "/x", "sha256": testPlugin.sum, "config": []any{1}}, `"config" is a []interface {}, want a map`},
		{map[string]any{"path": "/x", "sha256": testPlugin.sum, "call_timeout": "soon"}, `"call_timeout" is soon`},
		{map[string]any{"path": "/x", "sha256": "12"}, `sha256 "12" is not 64 hex digits`},
	} {
		_, err := host.Factory(drivers.Spec{ID: "dev-9", Options: c.opts}, drivers.Env{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "dev-9") {
			t.Errorf("Factory(%v) = %v, want an error naming dev-9 containing %q", c.opts, err, c.want)
		}
	}
}
