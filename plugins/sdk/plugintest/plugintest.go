// Package plugintest runs device and rule plugins in tests, without
// hardware and without a gateway. A plugin's Driver runs either in-process behind a real
// gRPC connection (go-plugin's TestPluginGRPCConn, so every call crosses the
// same protocol as in production) or as the built program, exactly as the
// gateway starts it. Either way the test gets the gateway's host-side
// device (*host.Plugin) and drives it with Poll, TakeEvents and Write.
//
// The plugin's serial bus is a drivers.Transactor: BusFunc simulates a
// device in a function and applies the plugin's frame rule to the reply as
// the gateway's bus arbiter does; for a simulator on a pseudo-terminal, pass
// a gateway/bus handle instead.
package plugintest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/internal/wire"
	"github.com/luling-edge/luling/plugins/sdk"
)

// Options configure the plugin device under test. Restarts after a failure
// back off 10 ms doubling to 100 ms, so that tests see them quickly.
type Options struct {
	Name        string             // device id; default "test-device"
	Bus         drivers.Transactor // the simulated bus; nil for none
	Config      map[string]any     // the plugin's config
	Spec        drivers.Spec       // unit, profile, tags
	Logger      *slog.Logger       // default: the test's log
	CallTimeout time.Duration      // default host.DefaultCallTimeout
	OnHealth    func(host.Health)
}

func (o Options) host(t testing.TB) host.Options {
	if o.Name == "" {
		o.Name = "test-device"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return host.Options{
		Name: o.Name, Logger: o.Logger, Bus: o.Bus, Config: o.Config, Spec: o.Spec,
		CallTimeout: o.CallTimeout, OnHealth: o.OnHealth,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}
}

// Start runs d in-process and returns the host-side device, closed when
// the test ends. A restart after a failure connects afresh to the same d.
func Start(t testing.TB, d sdk.Driver, opts Options) *host.Plugin {
	t.Helper()
	ho := opts.host(t)
	ho.Connect = inProcess(t, sdk.PluginSets(d)[wire.ProtocolLatest])
	p, err := host.New(ho)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// inProcess is a host.Options.Connect that serves the plugin set ps
// in-process over go-plugin's test gRPC connection.
func inProcess(t testing.TB, ps plugin.PluginSet) func(context.Context) (*host.Conn, error) {
	return func(context.Context) (*host.Conn, error) {
		c, s := plugin.TestPluginGRPCConn(t, false, ps)
		return &host.Conn{Protocol: c, Version: wire.ProtocolLatest, Kill: func() {
			// Close asks the server to stop through go-plugin's controller;
			// stop it directly only when that did not happen.
			c.Close()
			select {
			case <-s.DoneCh:
			case <-time.After(2 * time.Second):
				s.Stop()
			}
		}}, nil
	}
}

// StartRule runs the rule plugin r in-process and returns the gateway's
// side of it (what a rule's plugin: section starts), closed when the test
// ends. Options.Name is the rule's name (default "test-rule"); Bus must be
// nil. A restart after a failure connects afresh to the same r.
func StartRule(t testing.TB, r sdk.Rule, opts Options) *host.RulePlugin {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test-rule"
	}
	ho := opts.host(t)
	ho.Connect = inProcess(t, sdk.RulePluginSets(r)[wire.ProtocolLatest])
	p, err := host.NewRule(ho)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// StartRuleBinary runs a built rule plugin program (see Build), as the
// gateway does.
func StartRuleBinary(t testing.TB, path, sha256 string, opts Options) *host.RulePlugin {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test-rule"
	}
	ho := opts.host(t)
	ho.Path, ho.SHA256 = path, sha256
	p, err := host.NewRule(ho)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// StartBinary runs a built plugin program (see Build) and returns the
// host-side device, closed when the test ends.
func StartBinary(t testing.TB, path, sha256 string, opts Options) *host.Plugin {
	t.Helper()
	ho := opts.host(t)
	ho.Path, ho.SHA256 = path, sha256
	p, err := host.New(ho)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Build compiles the plugin program in pkg (an import path, or a directory
// starting with ./ relative to the test's package) into a temporary
// directory and returns its path and SHA-256.
func Build(t testing.TB, pkg string) (path, sha256 string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("plugintest: go build %s: %v\n%s", pkg, err, out)
	}
	sum, err := host.Checksum(path)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return path, sum
}

// BusFunc is a simulated bus: respond gets each request and returns the
// device's reply (nil: the device stays silent). Transact applies the
// frame rule to the reply the way the gateway's arbiter reads a line: the
// rule's length cuts the reply, a reply shorter than the rule wants is a
// timeout and a reply the rule refuses is an error.
type BusFunc func(req []byte) []byte

var _ drivers.Transactor = BusFunc(nil)

// Transact implements drivers.Transactor.
func (f BusFunc) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reply := f(append([]byte(nil), req...))
	if frameLen == nil {
		return nil, nil
	}
	for i := 1; i <= len(reply); i++ {
		total, err := frameLen(reply[:i])
		if err != nil {
			return nil, fmt.Errorf("simulated bus: reply % x: %w", reply[:i], err)
		}
		if total > 0 {
			if total > len(reply) {
				return nil, fmt.Errorf("simulated bus: reply of %d bytes, the frame rule wants %d: %w", len(reply), total, drivers.ErrTimeout)
			}
			return reply[:total], nil
		}
	}
	return nil, fmt.Errorf("simulated bus: reply % x is incomplete: %w", reply, drivers.ErrTimeout)
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(trim(p)))
	return len(p), nil
}

func trim(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}
