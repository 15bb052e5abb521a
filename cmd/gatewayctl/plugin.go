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
		fmt.Fprintf(stderr, "usage: %s plugin new NAME [-dir DIR] [-module PATH] [-luling DIR]\n", programName)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	return runPluginNew(ctx, args[1:], stdout, stderr)
}

var pluginName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}[a-z0-9]$`)

// runPluginNew scaffolds a device plugin project.
func runPluginNew(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet(programName+" plugin new", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "", "where to write the project (default ./NAME); must not exist or be empty")
	module := fl.String("module", "", "module path of a separate module (default: inside the Luling module when DIR is in it, else example.com/NAME)")
	luling := fl.String("luling", "", "the Luling repository, for the separate module's replace directive (default: found from the current directory)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s plugin new NAME [-dir DIR] [-module PATH] [-luling DIR]\n\n"+
			"Writes a device plugin project that builds and passes its test: main.go calling sdk.Serve,\n"+
			"a driver for a simple simulated device, a test using plugintest, and a README.\n"+
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
	files, err := scaffold(name, *dir, *module, *luling)
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

// scaffold writes the project and returns the files written.
func scaffold(name, dir, module, luling string) ([]string, error) {
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
	files := map[string]string{"main.go": mainTmpl, "driver.go": driverTmpl, "driver_test.go": testTmpl, "README.md": readmeTmpl}
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
	for _, f := range []string{"main.go", "driver.go", "driver_test.go", "README.md"} {
		var buf bytes.Buffer
		tmpl, err := template.New(f).Parse(files[f])
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", f, err)
		}
		if err := tmpl.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(abs, f), buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, filepath.Join(dir, f))
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

	"github.com/luling-edge/luling/gateway/payload"
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
