package lane

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/payload"
)

// Commands a gateway with lanes adds (docs/commands.md).
const (
	OpenCommand     = "lane.open"
	CountSetCommand = "lot.count.set"
)

// Handlers are the lane commands for lanes and lots, by name: lane.open
// {lane} lets one vehicle through, lot.count.set {lot, occupied}
// corrects a lot's count (an operator who counted, or the nightly reset
// rule) and records a count_set lane event for it.
func Handlers(lanes []*Lane, lots []*Lot, now func() time.Time, emit func(context.Context, []payload.Record) error) map[string]command.Handler {
	byLane := map[string]*Lane{}
	for _, l := range lanes {
		byLane[l.Name()] = l
	}
	byLot := map[string]*Lot{}
	for _, l := range lots {
		byLot[l.Name()] = l
	}
	out := map[string]command.Handler{}
	if len(lanes) > 0 {
		out[OpenCommand] = func(a *command.Args) (command.Action, error) {
			name := a.String("lane")
			if err := a.Err(); err != nil {
				return command.Action{}, err
			}
			l := byLane[name]
			if l == nil {
				return command.Action{}, fmt.Errorf("no lane %q on this gateway (lanes: %s)", payload.Clip(name), names(byLane))
			}
			return command.Action{Run: func(ctx context.Context) (map[string]any, error) {
				l.Open(ctx, "command")
				st := l.Status()
				return map[string]any{"lane": name, "state": st.State, "pending": st.Pending}, nil
			}}, nil
		}
	}
	if len(lots) > 0 {
		out[CountSetCommand] = func(a *command.Args) (command.Action, error) {
			name, v := a.String("lot"), a.Value("occupied")
			if err := a.Err(); err != nil {
				return command.Action{}, err
			}
			lot := byLot[name]
			if lot == nil {
				return command.Action{}, fmt.Errorf("no lot %q on this gateway (lots: %s)", payload.Clip(name), names(byLot))
			}
			if v.Type() != payload.TypeInt {
				return command.Action{}, fmt.Errorf("argument \"occupied\" is %v: want a whole number of vehicles", v.Interface())
			}
			return command.Action{Run: func(ctx context.Context) (map[string]any, error) {
				before, after, err := lot.Set(int(v.Int()), now())
				if err != nil {
					return nil, err
				}
				rec := payload.Record{Measurement: Measurement,
					Tags: map[string]string{"lot": name, "event": EventCountSet},
					Fields: map[string]payload.Value{"occupied": payload.Int(int64(after.Occupied)), "free": payload.Int(int64(after.Free)),
						"capacity": payload.Int(int64(after.Capacity)), "previous": payload.Int(int64(before.Occupied))},
					Time: after.Time}
				if err := emit(ctx, []payload.Record{rec}); err != nil {
					return nil, fmt.Errorf("lot %s: count set to %d but not recorded: %w", name, after.Occupied, err)
				}
				return map[string]any{"lot": name, "occupied": after.Occupied, "previous": before.Occupied, "free": after.Free}, nil
			}}, nil
		}
	}
	return out
}

func names[T any](m map[string]T) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
