// Package archtest keeps the package map of docs/design.md true: which
// packages may depend on which.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/luling-edge/luling/"

// deps lists the project's packages that pkgs depend on, themselves included.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	var own []string
	for _, p := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(p, module); ok {
			own = append(own, rel)
		}
	}
	return own
}

// driverPackages lists the packages under drivers/ except drivers/all.
func driverPackages(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "./drivers/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./drivers/...: %v", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		if p != module+"drivers/all" {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list ./drivers/... found only %v", pkgs)
	}
	return pkgs
}

func TestDependencyDirections(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cases := []struct {
		pkgs      []string
		forbidden []string // path prefixes
	}{
		{[]string{"./cmd/cloudd", "./cloud/..."}, []string{"gateway", "drivers", "plugins", "firmware-config"}},
		{[]string{"./plugins/sdk"}, []string{"gateway", "firmware-config", "cloud"}},
		{[]string{"./payload"}, []string{"gateway", "drivers", "plugins", "cloud", "firmware-config", "internal", "cmd"}},
		// Drivers describe themselves; the runtime and the config loader
		// consume that, never the other way round. drivers/all, which links
		// them into a binary and hands the loader their rules, is the
		// exception. Profiles as data (firmware-config/profiles) are fine.
		{driverPackages(t), []string{"gateway", "cloud", "firmware-config/config", "cmd"}},
		// The plugin SDK takes on no YAML parser (internal/schema and
		// internal/suggest are what the drivers package needs of it).
		{[]string{"./plugins/sdk"}, []string{"internal/yamlx"}},
		// The one YAML layer is a leaf.
		{[]string{"./internal/yamlx"}, []string{"gateway", "drivers", "plugins", "cloud", "firmware-config", "payload", "cmd"}},
		{[]string{"./internal/schema", "./internal/suggest"}, []string{"gateway", "drivers", "plugins", "cloud", "firmware-config", "payload", "cmd", "internal/yamlx"}},
	}
	for _, c := range cases {
		for _, d := range deps(t, c.pkgs...) {
			for _, f := range c.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s depends on %s: packages under %s/ must not (see docs/design.md)", strings.Join(c.pkgs, " "), d, f)
				}
			}
		}
	}
}

// Leaves import nothing else of the project: the contract, the clock and
// the precise sleep sit under everything and must not pull anything in.
func TestLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, leaf := range []string{"payload", "internal/clock", "internal/pace"} {
		for _, d := range deps(t, "./"+leaf) {
			if d != leaf {
				t.Errorf("%s depends on %s: it is a leaf (see docs/design.md)", leaf, d)
			}
		}
	}
}

// allDeps lists every package (the standard library's included) that pkgs
// depend on when built with tags.
func allDeps(t *testing.T, tags string, pkgs ...string) map[string]bool {
	t.Helper()
	args := append([]string{"list", "-deps", "-tags", tags}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	set := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		set[p] = true
	}
	return set
}

// The default gatewayd leaves the plugin host out (docs/plugins.md,
// "gatewayd and gatewayd-full"): go-plugin, gRPC and protobuf, and
// net/rpc with the templates it drags in, are most of the binary's size.
// gatewayd-full (-tags luling_full) has them; gatewayctl always does.
func TestDefaultGatewaydLeavesPluginHostOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	heavy := []string{"github.com/hashicorp/go-plugin", "google.golang.org/grpc", "google.golang.org/protobuf/proto",
		"net/rpc", "html/template", "encoding/gob", module + "plugins/host"}
	lean := allDeps(t, "", "./cmd/gatewayd")
	for _, p := range heavy {
		if lean[p] {
			t.Errorf("the default gatewayd links %s: it belongs in gatewayd-full only", p)
		}
	}
	if !lean[module+"plugins/hostspec"] {
		t.Errorf("the default gatewayd does not link plugins/hostspec: it could not check plugin devices' options")
	}
	for name, set := range map[string]map[string]bool{
		"gatewayd -tags luling_full": allDeps(t, "luling_full", "./cmd/gatewayd"),
		"gatewayctl":                 allDeps(t, "", "./cmd/gatewayctl"),
	} {
		for _, p := range []string{"github.com/hashicorp/go-plugin", module + "plugins/host"} {
			if !set[p] {
				t.Errorf("%s does not link %s", name, p)
			}
		}
	}
}
