package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/plugins/hostspec"
	"gopkg.in/yaml.v3"
)

// fullName is the gatewayd built with -tags luling_full (the plugin host
// linked in). Packages install it next to gatewayd; LULING_GATEWAYD_FULL
// names another path.
const fullName = "gatewayd-full"

// usesPlugins names what in cfg needs the plugin host: plugin devices and
// rules with a plugin: section.
func usesPlugins(cfg *config.Config) []string {
	var out []string
	for _, d := range cfg.Devices {
		if d.Driver == hostspec.DriverName {
			out = append(out, fmt.Sprintf("device %s (line %d)", d.ID, d.Line))
		}
	}
	for _, r := range cfg.Rules {
		if r.Node == nil || r.Node.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(r.Node.Content); i += 2 {
			if r.Node.Content[i].Value == "plugin" {
				out = append(out, fmt.Sprintf("rule %s (line %d)", r.Name, r.Line))
				break
			}
		}
	}
	return out
}

// fullPath is where gatewayd-full is expected.
func fullPath() (string, error) {
	if p := os.Getenv("LULING_GATEWAYD_FULL"); p != "" {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this program's path: %w", err)
	}
	return filepath.Join(filepath.Dir(self), fullName), nil
}

// execFull replaces this process with gatewayd-full; it returns only on
// error. The process keeps its id, so systemd (Type=notify) sees the same
// main process announce itself ready.
var execFull = func(path string, args []string) error {
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}

// needsFull reports whether cfg needs the plugin host that this build
// lacks.
func needsFull(cfg *config.Config) bool {
	return !pluginsBuilt && len(usesPlugins(cfg)) > 0
}

// findFull returns gatewayd-full's path, or an error that says what in the
// config at cfgPath needs it and how to get it.
func findFull(cfgPath string, cfg *config.Config) (string, error) {
	path, err := fullPath()
	if err == nil {
		var st os.FileInfo
		st, err = os.Stat(path)
		if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s uses plugins (%s), which this gatewayd runs through %s, and %s: %v "+
			"(install it from the luling-gateway package, or build it with go build -tags luling_full -o %s ./cmd/gatewayd; "+
			"LULING_GATEWAYD_FULL may name another path)", cfgPath, strings.Join(usesPlugins(cfg), ", "), fullName, path, err, fullName)
	}
	return path, nil
}

// handOver replaces this process with gatewayd-full, run with args; it
// returns only when that fails.
func handOver(cfgPath string, cfg *config.Config, args []string) error {
	path, err := findFull(cfgPath, cfg)
	if err != nil {
		return err
	}
	if err := execFull(path, args); err != nil {
		return fmt.Errorf("%s uses plugins (%s): run %s: %w", cfgPath, strings.Join(usesPlugins(cfg), ", "), path, err)
	}
	return errHandedOver
}

// errHandedOver is what handOver returns when execFull returned without
// error, which only a test's execFull does.
var errHandedOver = errors.New("handed over to " + fullName)

// checkWithFull validates the config at cfgPath with gatewayd-full -check:
// what a running gatewayd does before it hands a reload over to it.
func checkWithFull(cfgPath string, cfg *config.Config) error {
	path, err := findFull(cfgPath, cfg)
	if err != nil {
		return err
	}
	out, err := exec.Command(path, "-check", "-config", cfgPath).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		msg = strings.TrimPrefix(msg, fullName+": ")
		return fmt.Errorf("%s (checked by %s)", msg, path)
	}
	return nil
}
