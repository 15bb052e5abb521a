// Command testrule is a rule plugin for the host's tests. Its config key
// "mode" picks a behaviour: "echo" (an emit per record, and a write with
// the number of records the plugin holds), "crash" (the process exits on
// the third call), "hang" (Evaluate never returns), "bad" (invalid actions
// among good ones).
package main

import (
	"context"
	"os"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/sdk"
)

type rule struct {
	mode  string
	calls int
	seen  map[string]bool // devices seen since the process started
}

func (r *rule) Describe() sdk.RuleDescription {
	return sdk.RuleDescription{Name: "testrule", Description: "rule plugin for tests", Version: "0.0.1"}
}

func (r *rule) Configure(_ context.Context, env sdk.RuleEnv) error {
	var cfg struct {
		Mode string `json:"mode"`
	}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	r.mode, r.seen = cfg.Mode, map[string]bool{}
	return nil
}

func (r *rule) Evaluate(ctx context.Context, in sdk.Input) ([]sdk.Action, error) {
	r.calls++
	switch r.mode {
	case "hang":
		<-ctx.Done()
		select {}
	case "crash":
		if r.calls == 3 {
			os.Exit(3)
		}
	case "bad":
		return []sdk.Action{
			sdk.Alert("loud", "no such severity", ""),
			sdk.Write("", "free", payload.Int(1)),
			sdk.Emit(payload.Record{Measurement: "parking_bay", Fields: map[string]payload.Value{"occupied": payload.String("yes")}}),
			sdk.Alert("info", "fine", "dev-1"),
		}, nil
	}
	var out []sdk.Action
	for _, rec := range in.Records {
		r.seen[rec.Tags["device"]] = true
		out = append(out, sdk.Emit(payload.Record{Measurement: "echo", Tags: map[string]string{"device": rec.Tags["device"]},
			Fields: map[string]payload.Value{"n": rec.Fields["n"], "resumed": payload.Bool(in.Resumed)}}))
	}
	if in.Tick {
		out = append(out, sdk.EmitEvent(payload.Record{Measurement: "tick", Fields: map[string]payload.Value{"at": payload.Int(in.Now.Unix())}}))
	}
	out = append(out, sdk.Write("sign", "seen", payload.Int(int64(len(r.seen)))))
	return out, nil
}

func main() { sdk.ServeRule(&rule{}) }
