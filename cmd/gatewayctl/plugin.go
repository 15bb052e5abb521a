package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// lulingModule is this repository's module path.
const lulingModule = "github.com/luling-edge/luling"

// runPlugin dispatches `gatewayctl plugin SUBCOMMAND`.
func runPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprintf(stderr, "usage: %s plugin new NAME [-rule] [-dir DIR] [-module PATH] [-luling DIR]\n", programName)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	return runPluginNew(ctx, args[1:], stdout, stderr)
}

var pluginName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}[a-z0-9]$`)

// runPluginNew scaffolds a device plugin project, or with -rule a rule
// plugin project.
func runPluginNew(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet(programName+" plugin new", flag.ContinueOnError)
	fl.SetOutput(stderr)
	rule := fl.Bool("rule", false, "write a rule plugin (sdk.Rule, declared under rules:) instead of a device plugin")
	dir := fl.String("dir", "", "where to write the project (default ./NAME); must not exist or be empty")
	module := fl.String("module", "", "module path of a separate module (default: inside the Luling module when DIR is in it, else example.com/NAME)")
	luling := fl.String("luling", "", "the Luling repository, for the separate module's replace directive (default: found from the current directory)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s plugin new NAME [-rule] [-dir DIR] [-module PATH] [-luling DIR]\n\n"+
			"Writes a device plugin project that builds and passes its test: main.go calling sdk.Serve,\n"+
			"a driver for a simple simulated device, a test using plugintest, and a README.\n"+
			"With -rule, a rule plugin project instead: main.go calling sdk.ServeRule, a rule that\n"+
			"alerts when a device sends too many records within a window, a test using\n"+
			"plugintest.StartRule, and a README with the rules: entry that declares it.\n"+
			"Inside the Luling repository the project is a package of its module; elsewhere it is a\n"+
			"separate module whose go.mod points at the repository with a replace directive.\n\nflags:\n", programName)
		fl.PrintDefaults()
	}
	// Allow the name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if name == "" && fl.NArg() > 0 {
		name = fl.Arg(0)
	} else if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "%s plugin new: unexpected argument %q\n", programName, fl.Arg(0))
		return exitUsage
	}
	if !pluginName.MatchString(name) {
		fmt.Fprintf(stderr, "%s plugin new: name %q: want lowercase letters, digits and dashes, 2..64 long, starting with a letter\n", programName, name)
		return exitUsage
	}
	if *dir == "" {
		*dir = name
	}
	kind := deviceProject
	if *rule {
		kind = ruleProject
	}
	files, err := scaffold(kind, name, *dir, *module, *luling)
	if err != nil {
		fmt.Fprintf(stderr, "%s plugin new: %v\n", programName, err)
		return exitFailed
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	return exitOK
}

// findLuling walks up from dir to the Luling repository's root.
func findLuling(dir string) (string, bool) {
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			return dir, modulePath(data) == lulingModule
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// project is what the templates see.
type project struct {
	Name        string // guidance-display
	Measurement string // guidance_display
	ImportPath  string // the package's import path
	Module      string // the separate module, "" inside Luling
}

// projectFile is one file of a scaffold and its template.
type projectFile struct{ name, tmpl string }

// The kinds of project, as the files to write in order.
var (
	deviceProject = []projectFile{{"main.go", mainTmpl}, {"driver.go", driverTmpl}, {"driver_test.go", testTmpl}, {"README.md", readmeTmpl}}
	ruleProject   = []projectFile{{"main.go", ruleMainTmpl}, {"rule.go", ruleTmpl}, {"rule_test.go", ruleTestTmpl}, {"README.md", ruleReadmeTmpl}}
)

// scaffold writes the project of the kind and returns the files written.
func scaffold(kind []projectFile, name, dir, module, luling string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty", dir)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	p := project{Name: name, Measurement: strings.ReplaceAll(name, "-", "_")}
	root, inside := findLuling(abs)
	if module == "" && inside {
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			return nil, err
		}
		p.ImportPath = lulingModule + "/" + filepath.ToSlash(rel)
	} else {
		if module == "" {
			module = "example.com/" + name
		}
		if luling == "" {
			cwd, _ := os.Getwd()
			var ok bool
			if luling, ok = findLuling(cwd); !ok {
				return nil, errors.New("cannot find the Luling repository from the current directory; give it with -luling DIR")
			}
		}
		if luling, err = filepath.Abs(luling); err != nil {
			return nil, err
		}
		lulingMod, err := os.ReadFile(filepath.Join(luling, "go.mod"))
		if err != nil {
			return nil, fmt.Errorf("-luling %s: %w", luling, err)
		}
		if got := modulePath(lulingMod); got != lulingModule {
			return nil, fmt.Errorf("-luling %s: go.mod declares module %q, want %s", luling, got, lulingModule)
		}
		p.Module, p.ImportPath = module, module
		gomod, err := pluginGoMod(module, luling, lulingMod)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(abs, "go.mod"), gomod, 0o644); err != nil {
			return nil, err
		}
		// The repository's go.sum covers every module the plugin needs.
		if sum, err := os.ReadFile(filepath.Join(luling, "go.sum")); err == nil {
			if err := os.WriteFile(filepath.Join(abs, "go.sum"), sum, 0o644); err != nil {
				return nil, err
			}
		}
	}
	out := []string{}
	if p.Module != "" {
		out = append(out, filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.sum"))
	}
	for _, f := range kind {
		var buf bytes.Buffer
		tmpl, err := template.New(f.name).Parse(f.tmpl)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", f.name, err)
		}
		if err := tmpl.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(abs, f.name), buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, filepath.Join(dir, f.name))
	}
	return out, nil
}

// pluginGoMod is the separate module's go.mod: the repository's go
// directive and requirements (so that the plugin builds with the versions
// the gateway was tested with), plus Luling itself through a replace.
func pluginGoMod(module, luling string, lulingMod []byte) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "module %s\n", module)
	sc := bufio.NewScanner(bytes.NewReader(lulingMod))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "module" || f[0] == "replace" || f[0] == "retract") {
			if f[0] != "module" && !strings.HasSuffix(line, "(") {
				continue
			}
			if f[0] == "module" {
				continue
			}
			return nil, fmt.Errorf("%s/go.mod has a %s block, which a plugin module cannot copy", luling, f[0])
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "\nrequire %s v0.0.0-00010101000000-000000000000\n\nreplace %s => %s\n", lulingModule, lulingModule, luling)
	return b.Bytes(), nil
}

const mainTmpl = `// Command {{.Name}} is a Luling device plugin. The gateway starts it; run
// by hand it only prints a message. See driver.go for the device.
package main

import "github.com/luling-edge/luling/plugins/sdk"

func main() { sdk.Serve(newDriver()) }
`

const driverTmpl = `package main

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/sdk"
)

// The device speaks a line protocol (replace it with yours):
//
//	request  ?AA<CR>             AA = the device address, 01..99
//	reply    !AA=<value><CR>     value = a decimal number, e.g. !07=+0123.4
//
// The reply starts with '!' and ends with CR, which is the frame rule the
// gateway's bus arbiter uses to find its end.
var rule = func() sdk.FrameRule {
	r := sdk.Delimited('\r', 32)
	r.Start = []byte("!")
	return r
}()

// config is the plugin's settings: the ` + "`config`" + ` object of the
// device's options in the gateway config.
type config struct {
	Address int ` + "`json:\"address\"`" + `
}

type driver struct {
	mu   sync.Mutex
	cfg  config
	tags map[string]string
	bus  sdk.Bus
}

func newDriver() *driver { return &driver{} }

func (d *driver) Describe() sdk.Description {
	return sdk.Description{
		Name:        "{{.Name}}",
		Description: "{{.Name}} device plugin",
		Measurement: "{{.Measurement}}",
		Version:     "0.1.0",
	}
}

func (d *driver) Configure(_ context.Context, env sdk.Env) error {
	cfg := config{Address: env.Spec.Unit}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if cfg.Address < 1 || cfg.Address > 99 {
		return fmt.Errorf("config: key \"address\": %d out of range 1..99: %w", cfg.Address, sdk.ErrInvalid)
	}
	if env.Bus == nil {
		return fmt.Errorf("config: the device needs a serial bus: %w", sdk.ErrInvalid)
	}
	tags := map[string]string{"device": env.Spec.ID}
	maps.Copy(tags, env.Spec.Tags)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg, d.tags, d.bus = cfg, tags, env.Bus
	return nil
}

func (d *driver) Poll(ctx context.Context) ([]payload.Record, error) {
	d.mu.Lock()
	addr, bus, tags := d.cfg.Address, d.bus, maps.Clone(d.tags)
	d.mu.Unlock()
	reply, err := bus.Transact(ctx, []byte(fmt.Sprintf("?%02d\r", addr)), rule)
	if err != nil {
		return nil, fmt.Errorf("address %02d: %w", addr, err)
	}
	want := fmt.Sprintf("!%02d=", addr)
	s := strings.TrimSuffix(string(reply), "\r")
	if !strings.HasPrefix(s, want) {
		return nil, fmt.Errorf("address %02d: reply %q does not start with %q", addr, reply, want)
	}
	v, err := strconv.ParseFloat(s[len(want):], 64)
	if err != nil {
		return nil, fmt.Errorf("address %02d: reply %q: value is not a number", addr, reply)
	}
	rec := payload.Record{
		Measurement: "{{.Measurement}}",
		Tags:        tags,
		Fields:      map[string]payload.Value{"value": payload.Float(v)},
	}
	return []payload.Record{rec}, nil
}

func (d *driver) TakeEvents() []payload.Record { return nil }

func (d *driver) Write(_ context.Context, point string, _ payload.Value) error {
	return fmt.Errorf("write %q: the device has no writable points: %w", point, sdk.ErrInvalid)
}
`

const testTmpl = `package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

// simulate answers the line protocol for a device at address 7 whose value
// is 123.4.
func simulate(req []byte) []byte {
	if string(req) != "?07\r" {
		return nil // other addresses stay silent
	}
	return []byte("!07=+0123.4\r")
}

func TestPoll(t *testing.T) {
	p := plugintest.Start(t, newDriver(), plugintest.Options{
		Name:   "{{.Name}}-1",
		Bus:    plugintest.BusFunc(simulate),
		Config: map[string]any{"address": 7},
		Spec:   drivers.Spec{Tags: map[string]string{"zone": "a"}},
	})
	recs, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Measurement != "{{.Measurement}}" {
		t.Fatalf("records %+v", recs)
	}
	if v := recs[0].Fields["value"].Float(); v != 123.4 {
		t.Errorf("value %v, want 123.4", v)
	}
	if recs[0].Tags["device"] != "{{.Name}}-1" || recs[0].Tags["zone"] != "a" {
		t.Errorf("tags %v", recs[0].Tags)
	}
}

func TestSilentDevice(t *testing.T) {
	p := plugintest.Start(t, newDriver(), plugintest.Options{
		Bus:    plugintest.BusFunc(simulate),
		Config: map[string]any{"address": 8},
	})
	if _, err := p.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "address 08") {
		t.Fatalf("Poll = %v, want a timeout naming address 08", err)
	}
}

func TestBadConfig(t *testing.T) {
	p := plugintest.Start(t, newDriver(), plugintest.Options{
		Bus:    plugintest.BusFunc(simulate),
		Config: map[string]any{"adress": 7},
	})
	_, err := p.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unknown key %q", "adress")) {
		t.Fatalf("Poll = %v, want an error naming the unknown key", err)
	}
}
`

const readmeTmpl = `# {{.Name}}: a Luling device plugin

A device plugin for the Luling gateway, made with ` + "`gatewayctl plugin new`" + `.
The driver in driver.go speaks a simple line protocol; replace it with your
device's. The guide is docs/plugins.md in the Luling repository.

Build and test:

    go test ./...
    CGO_ENABLED=0 GOARCH=arm GOARM=7 go build -o {{.Name}} .   # for an ARMv7 gateway
    sha256sum {{.Name}}

Declare it in the gateway config:

    devices:
      - id: {{.Name}}-1
        driver: plugin
        bus: rs485-1
        unit: 7
        options:
          path: /opt/luling/plugins/{{.Name}}
          sha256: <the sha256sum of the binary>
          config:
            address: 7

Readings arrive as measurement ` + "`{{.Measurement}}`" + ` with field ` + "`value`" + ` and tag ` + "`device`" + `.
`

const ruleMainTmpl = `// Command {{.Name}} is a Luling rule plugin. The gateway starts it for the
// rules: entry that names it; run by hand it only prints a message. See
// rule.go for what it decides.
package main

import "github.com/luling-edge/luling/plugins/sdk"

func main() { sdk.ServeRule(newRule()) }
`

const ruleTmpl = `package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/luling-edge/luling/plugins/sdk"
)

// The rule counts the records its trigger selects per device (their
// device tag) and raises an alert when a device has threshold of them
// within the window: with trigger {event: fault}, a device that reports
// faults again and again. Replace the counting with your own logic; the
// config, the state per device and the handling of restarts stay useful.
//
//   - A device alerts once when its count reaches the threshold, and again
//     only after its count has fallen below it: records leave the window
//     as time passes, which every call notices, ticks included.
//   - Records without a device tag, and records older than the window (a
//     replay after a long outage), are not counted.
//   - After the plugin (re)starts, the first call is Resumed and carries
//     the last record of every series the rule has seen: the counts are
//     rebuilt from those still in the window. The rule cannot know whether
//     the old process alerted, so a device that is still at the threshold
//     alerts again: an alert repeated after a crash rather than one lost.

// Config limits and defaults.
const (
	maxThreshold  = 10000
	minWindow     = time.Second
	maxWindow     = 24 * time.Hour
	defaultWindow = "1h"
)

// config is the rule's settings: the ` + "`config`" + ` object of the plugin:
// section of the rule in the gateway config.
type config struct {
	// Threshold is how many records of one device within the window
	// raise the alert: 1..maxThreshold, required.
	Threshold int ` + "`json:\"threshold\"`" + `
	// Window is how far back to count, a Go duration ("10m"):
	// minWindow..maxWindow, default defaultWindow.
	Window string ` + "`json:\"window\"`" + `
	// Severity is the alert's: info, warning (default) or critical.
	Severity string ` + "`json:\"severity\"`" + `
}

type rule struct {
	mu      sync.Mutex // guards the rest: the SDK calls one at a time, a test may not
	cfg     config
	window  time.Duration
	log     *slog.Logger
	devices map[string]*device // by device tag; only devices with records in the window
}

var _ sdk.Rule = (*rule)(nil)

// device is one device's count.
type device struct {
	times   []time.Time // of its last records within the window, oldest first; at most threshold
	alerted bool        // the count reached the threshold and has not fallen below since
}

func newRule() *rule { return &rule{} }

func (r *rule) Describe() sdk.RuleDescription {
	return sdk.RuleDescription{
		Name:        "{{.Name}}",
		Description: "alerts when a device sends too many records within a window",
		Version:     "0.1.0",
	}
}

// Configure checks the config and starts from empty counts.
func (r *rule) Configure(_ context.Context, env sdk.RuleEnv) error {
	cfg := config{Window: defaultWindow, Severity: "warning"}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if cfg.Threshold < 1 || cfg.Threshold > maxThreshold {
		return fmt.Errorf("config: key \"threshold\": %d out of range 1..%d (it is required): %w", cfg.Threshold, maxThreshold, sdk.ErrInvalid)
	}
	window, err := time.ParseDuration(cfg.Window)
	if err != nil || window < minWindow || window > maxWindow {
		return fmt.Errorf("config: key \"window\": %q: want a duration from %s to %s, e.g. \"10m\": %w", cfg.Window, minWindow, maxWindow, sdk.ErrInvalid)
	}
	switch cfg.Severity {
	case "info", "warning", "critical":
	default:
		return fmt.Errorf("config: key \"severity\": %q: want info, warning or critical: %w", cfg.Severity, sdk.ErrInvalid)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg, r.window, r.log = cfg, window, log
	r.devices = map[string]*device{}
	return nil
}

// Evaluate counts the records and returns an alert for every device whose
// count reached the threshold.
func (r *rule) Evaluate(_ context.Context, in sdk.Input) ([]sdk.Action, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in.Resumed {
		// A new process: in.Records are the last record of every series,
		// to rebuild the counts from.
		clear(r.devices)
		r.log.Debug("{{.Name}}: rebuilding the counts", "records", len(in.Records))
	}
	cutoff := in.Now.Add(-r.window)
	var acts []sdk.Action
	for i := range in.Records {
		rec := &in.Records[i]
		name := rec.Tag("device")
		t := rec.Time
		if t.IsZero() {
			t = in.Now
		}
		if name == "" || t.Before(cutoff) {
			continue
		}
		d := r.devices[name]
		if d == nil {
			d = &device{}
			r.devices[name] = d
		}
		if d.add(t, r.window, r.cfg.Threshold) {
			acts = append(acts, sdk.Alert(r.cfg.Severity,
				fmt.Sprintf("device %s: %d records within %s", name, len(d.times), r.cfg.Window), name))
		}
	}
	// Time passed, also on a tick (in.Tick: a scheduled call, no records):
	// forget what left the window, and devices with nothing left in it.
	for name, d := range r.devices {
		if d.expire(cutoff, r.cfg.Threshold); len(d.times) == 0 {
			delete(r.devices, name)
		}
	}
	return acts, nil
}

// add counts a record at t and reports whether the count reached the
// threshold with it.
func (d *device) add(t time.Time, window time.Duration, threshold int) bool {
	d.expire(t.Add(-window), threshold)
	d.times = append(d.times, t)
	if len(d.times) > threshold {
		d.times = d.times[1:] // the count only needs to reach the threshold
	}
	if len(d.times) < threshold || d.alerted {
		return false
	}
	d.alerted = true
	return true
}

// expire forgets the records before cutoff. A device whose count fell
// below the threshold may alert again.
func (d *device) expire(cutoff time.Time, threshold int) {
	d.times = slices.DeleteFunc(d.times, func(t time.Time) bool { return t.Before(cutoff) })
	if len(d.times) < threshold {
		d.alerted = false
	}
}
`

const ruleTestTmpl = `package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

var t0 = time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC)

// fault is a fault event of a device ("": without a device tag), sec
// seconds after t0, as a driver reports it. Each code is a series of its own.
func fault(device, code string, sec int) payload.Record {
	rec := payload.Record{
		Measurement: "fault",
		Tags:        map[string]string{"device": device, "code": code},
		Fields:      map[string]payload.Value{"state": payload.String("active")},
		Time:        t0.Add(time.Duration(sec) * time.Second),
	}
	if device == "" {
		delete(rec.Tags, "device")
	}
	return rec
}

// start runs the rule behind the gateway's plugin host, as the gateway
// runs it (real gRPC, the host's checks of every action), and returns a
// function that calls it at t0+sec with records (none: a tick) and
// returns its alerts as "severity device: message".
func start(t *testing.T, config map[string]any) func(sec int, recs ...payload.Record) []string {
	r := plugintest.StartRule(t, newRule(), plugintest.Options{Name: "{{.Name}}-test", Config: config})
	return func(sec int, recs ...payload.Record) []string {
		t.Helper()
		acts, err := r.Evaluate(context.Background(), rules.PluginInput{
			Records: recs, Now: t0.Add(time.Duration(sec) * time.Second), Tick: len(recs) == 0,
		})
		if err != nil {
			t.Fatal(err)
		}
		var alerts []string
		for _, a := range acts {
			if a.Kind == rules.ActAlert {
				alerts = append(alerts, fmt.Sprintf("%s %s: %s", a.Severity, a.Device, a.Message))
			}
		}
		return alerts
	}
}

func TestAlertAtThreshold(t *testing.T) {
	eval := start(t, map[string]any{"threshold": 3, "window": "1m"})
	alert := []string{"warning door-1: device door-1: 3 records within 1m"}
	for _, step := range []struct {
		sec  int
		recs []payload.Record
		want []string
	}{
		{0, nil, nil}, // the first call of a new process is Resumed, here with nothing to replay
		{1, []payload.Record{fault("door-1", "jam", 1)}, nil},
		{2, []payload.Record{fault("door-1", "jam", 2), fault("door-2", "jam", 2)}, nil},
		{3, []payload.Record{fault("door-1", "jam", 3), fault("", "jam", 3)}, alert},
		{4, []payload.Record{fault("door-1", "jam", 4)}, nil}, // one alert per crossing
		{30, nil, nil},
		{70, nil, nil}, // a tick: the records have left the window
		{71, []payload.Record{fault("door-1", "jam", 71), fault("door-1", "jam", 72)}, nil},
		{73, []payload.Record{fault("door-1", "jam", 73)}, alert},
		{200, []payload.Record{fault("door-1", "jam", 200)}, nil},
	} {
		if got := eval(step.sec, step.recs...); !slices.Equal(got, step.want) {
			t.Errorf("at %ds: alerts %q, want %q", step.sec, got, step.want)
		}
	}
}

// After a (re)start the rule rebuilds its counts from the replayed
// records: here two series of door-1 within the window, and one older.
func TestResumedRebuildsCounts(t *testing.T) {
	eval := start(t, map[string]any{"threshold": 3, "window": "1m", "severity": "critical"})
	if got := eval(100, fault("door-1", "jam", 1), fault("door-1", "power", 90), fault("door-1", "motor", 95)); got != nil {
		t.Fatalf("alerts %q on the resumed call, want none", got)
	}
	want := []string{"critical door-1: device door-1: 3 records within 1m"}
	if got := eval(101, fault("door-1", "jam", 101)); !slices.Equal(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		config map[string]any
		want   string
	}{
		{map[string]any{"treshold": 3}, ` + "`unknown key \"treshold\"`" + `},
		{map[string]any{}, ` + "`key \"threshold\": 0 out of range`" + `},
		{map[string]any{"threshold": 3, "window": "5 minutes"}, ` + "`key \"window\"`" + `},
		{map[string]any{"threshold": 3, "severity": "high"}, ` + "`key \"severity\"`" + `},
	} {
		r := plugintest.StartRule(t, newRule(), plugintest.Options{Config: c.config})
		_, err := r.Evaluate(context.Background(), rules.PluginInput{Now: t0, Tick: true})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %v: Evaluate = %v, want an error containing %s", c.config, err, c.want)
		}
	}
}
`

const ruleReadmeTmpl = `# {{.Name}}: a Luling rule plugin

A rule plugin for the Luling gateway, made with ` + "`gatewayctl plugin new -rule`" + `.
The rule in rule.go counts the records its trigger selects per device and
raises an alert when a device has ` + "`threshold`" + ` of them within ` + "`window`" + `;
replace the counting with your own logic. The guide is docs/plugins.md
("Rule plugins") in the Luling repository, the keys of a plugin rule are in
docs/rules.md ("Plugin rules").

Build and test:

    go test ./...
    CGO_ENABLED=0 GOARCH=arm GOARM=7 go build -o {{.Name}} .   # for an ARMv7 gateway
    sha256sum {{.Name}}

Declare it in the gateway config, here for devices that report faults again
and again:

    rules:
      - name: {{.Name}}
        trigger: {event: fault}
        plugin:
          path: /opt/luling/plugins/{{.Name}}
          sha256: "<the sha256sum of the binary>"
          config:
            threshold: 5
            window: 10m
            severity: warning

| config key | meaning |
|---|---|
| ` + "`threshold`" + ` | records of one device within the window that raise the alert, 1..10000 (required) |
| ` + "`window`" + ` | how far back to count, 1s..24h (default ` + "`1h`" + `) |
| ` + "`severity`" + ` | the alert's severity: ` + "`info`, `warning`" + ` (default) or ` + "`critical`" + ` |

Unknown keys are refused with a message naming them. Records without a
` + "`device`" + ` tag are not counted. A device alerts once when its count reaches
the threshold, and again only after its count has fallen below it. The
alert is an event record of measurement ` + "`alert`" + ` with tags ` + "`rule`, `severity`" + `
and ` + "`device`" + ` and field ` + "`message`" + ` (e.g. "device door-1: 5 records within
10m").
`
