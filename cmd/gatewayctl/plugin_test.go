package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/rules"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// A scaffold outside the repository is a separate module that builds,
// passes its own test, and runs as a plugin under the gateway's host.
func TestPluginNewSeparateModule(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "meter")
	code, out, errOut := runCmd(t, "plugin", "new", "water-meter", "-dir", dir, "-module", "example.org/plugins/water-meter", "-luling", repo)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "driver.go", "driver_test.go", "README.md"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("output does not list %s:\n%s", f, out)
		}
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.HasPrefix(string(gomod), "module example.org/plugins/water-meter\n") || !strings.Contains(string(gomod), "replace github.com/luling-edge/luling => "+repo) {
		t.Errorf("go.mod:\n%s", gomod)
	}
	goCmd(t, dir, "vet", "./...")
	if out := goCmd(t, dir, "test", "-count=1", "./..."); !strings.Contains(out, "ok  \texample.org/plugins/water-meter") {
		t.Errorf("go test:\n%s", out)
	}
	bin := filepath.Join(dir, "water-meter")
	goCmd(t, dir, "build", "-o", bin, ".")
	sum, err := host.Checksum(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := plugintest.StartBinary(t, bin, sum, plugintest.Options{
		Name:   "meter-1",
		Config: map[string]any{"address": 7},
		Bus: plugintest.BusFunc(func(req []byte) []byte {
			if string(req) == "?07\r" {
				return []byte("!07=-12.5\r")
			}
			return nil
		}),
	})
	recs, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Measurement != "water_meter" || recs[0].Fields["value"].Float() != -12.5 || recs[0].Tags["device"] != "meter-1" {
		t.Errorf("records %+v", recs)
	}
}

// With -rule the scaffold is a rule plugin: a separate module that builds,
// passes its own test, and runs under the gateway's host with the rules:
// entry its README shows.
func TestPluginNewRule(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "faults")
	code, out, errOut := runCmd(t, "plugin", "new", "door-faults", "-rule", "-dir", dir, "-module", "example.org/plugins/door-faults", "-luling", repo)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "rule.go", "rule_test.go", "README.md"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("output does not list %s:\n%s", f, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "driver.go")); !os.IsNotExist(err) {
		t.Errorf("a rule scaffold has driver.go (%v)", err)
	}
	goCmd(t, dir, "vet", "./...")
	if out := goCmd(t, dir, "test", "-count=1", "./..."); !strings.Contains(out, "ok  \texample.org/plugins/door-faults") {
		t.Errorf("go test:\n%s", out)
	}

	// The README's rules: entry is one the gateway reads.
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(readme), "\n    rules:\n")
	block, _, _ = strings.Cut(block, "\n\n")
	defs, err := rules.ParseFile("README.md", []byte(strings.ReplaceAll("rules:\n"+block, "\n    ", "\n")))
	if err != nil || len(defs) != 1 || defs[0].Plugin == nil || defs[0].Name != "door-faults" {
		t.Fatalf("README's rules: entry: %v %+v\n%s", err, defs, readme)
	}

	bin := filepath.Join(dir, "door-faults")
	goCmd(t, dir, "build", "-o", bin, ".")
	sum, err := host.Checksum(bin)
	if err != nil {
		t.Fatal(err)
	}
	r := plugintest.StartRuleBinary(t, bin, sum, plugintest.Options{Name: defs[0].Name, Config: defs[0].Plugin.Config})
	t0 := time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC)
	threshold, ok := defs[0].Plugin.Config["threshold"].(int)
	if !ok || threshold < 2 {
		t.Fatalf("README's config: threshold %v, want an int of at least 2", defs[0].Plugin.Config["threshold"])
	}
	for i := range threshold + 1 {
		now := t0.Add(time.Duration(i) * time.Second)
		rec := payload.Record{Measurement: "fault", Time: now,
			Tags:   map[string]string{"device": "door-1", "code": "jam"},
			Fields: map[string]payload.Value{"state": payload.String("active")}}
		acts, err := r.Evaluate(context.Background(), rules.PluginInput{Records: []payload.Record{rec}, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		alerted := len(acts) == 1 && acts[0].Kind == rules.ActAlert && acts[0].Device == "door-1" && acts[0].Severity == "warning"
		if alerted != (i == threshold-1) || len(acts) > 1 {
			t.Errorf("record %d of %d within the window: actions %+v", i+1, threshold, acts)
		}
	}
}

// Inside the repository the scaffold is a package of the Luling module.
func TestPluginNewInsideRepository(t *testing.T) {
	// A leading underscore keeps ./... patterns away from the scaffold
	// while it exists.
	parent, err := os.MkdirTemp(".", "_scaffold-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	dir := filepath.Join(parent, "door-counter")
	if code, _, errOut := runCmd(t, "plugin", "new", "door-counter", "-dir", dir); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); !os.IsNotExist(err) {
		t.Errorf("a go.mod was written inside the repository (%v)", err)
	}
	if out := goCmd(t, ".", "test", "-count=1", "./"+filepath.ToSlash(dir)); !strings.Contains(out, "ok  \tgithub.com/luling-edge/luling/cmd/gatewayctl/"+filepath.ToSlash(dir)) {
		t.Errorf("go test:\n%s", out)
	}
}

func TestPluginNewRefuses(t *testing.T) {
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plugin"}, exitUsage, "usage: gatewayctl plugin new NAME"},
		{[]string{"plugin", "new", "Bad_Name"}, exitUsage, `name "Bad_Name"`},
		{[]string{"plugin", "new", "-rule", "Bad_Name"}, exitUsage, `name "Bad_Name"`},
		{[]string{"plugin", "new", "Bad_Name", "-rule"}, exitUsage, `name "Bad_Name"`},
		{[]string{"plugin", "new", "-rule"}, exitUsage, `name ""`},
		{[]string{"plugin", "new", "ok-name", "-rule", "-dir", full}, exitFailed, "exists and is not empty"},
		{[]string{"plugin", "new", "ok-name", "-dir", full}, exitFailed, "exists and is not empty"},
		{[]string{"plugin", "new", "ok-name", "-dir", filepath.Join(t.TempDir(), "p"), "-luling", t.TempDir()}, exitFailed, "-luling"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
