package lane_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/gateway/lane"
)

func TestCommands(t *testing.T) {
	r := newRig(t, lane.In, 10, func(c *lane.Config) { c.Visitors = lane.VisitorsDeny })
	h := lane.Handlers([]*lane.Lane{r.l}, []*lane.Lot{r.lot}, r.clk.Now, r.rec.emit)
	run := func(name string, args map[string]any) (map[string]any, error) {
		a, err := h[name](command.NewArgs(args))
		if err != nil {
			return nil, err
		}
		return a.Run(context.Background())
	}
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{lane.CountSetCommand, map[string]any{"lot": "p9", "occupied": json.Number("3")}, `no lot "p9" on this gateway (lots: p1)`},
		{lane.CountSetCommand, map[string]any{"lot": "p1", "occupied": json.Number("2.5")}, "want a whole number"},
		{lane.CountSetCommand, map[string]any{"lot": "p1"}, `missing argument "occupied"`},
		{lane.CountSetCommand, map[string]any{"lot": "p1", "occupied": json.Number("101")}, "want 0..100"},
		{lane.OpenCommand, map[string]any{"lane": "x"}, `no lane "x" on this gateway (lanes: gate-in)`},
		{lane.OpenCommand, map[string]any{"lane": "gate-in", "for": "1s"}, `unknown argument "for"`},
	} {
		_, err := run(c.name, c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want %q", c.name, c.args, err, c.want)
		}
	}
	r.lot.Add(4, r.clk.Now())
	r.clk.Advance(time.Second)
	res, err := run(lane.CountSetCommand, map[string]any{"lot": "p1", "occupied": json.Number("7")})
	if err != nil {
		t.Fatal(err)
	}
	if res["occupied"] != 7 || res["previous"] != 4 || res["free"] != 3 {
		t.Fatalf("result %v", res)
	}
	rec := r.rec.last(lane.EventCountSet)
	if rec.Tags["lot"] != "p1" || rec.Fields["occupied"].Int() != 7 || rec.Fields["previous"].Int() != 4 || !rec.Time.Equal(r.clk.Now()) {
		t.Fatalf("count_set record %+v", rec)
	}
	if st := r.lot.State(); st.Occupied != 7 {
		t.Fatalf("lot %+v", st)
	}
	r.rec.events()
	if _, err := run(lane.OpenCommand, map[string]any{"lane": "gate-in"}); err != nil {
		t.Fatal(err)
	}
	r.expect("granted", "opening")
	r.moves(true)
}
