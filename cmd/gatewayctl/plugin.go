package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
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

// templates holds the scaffolds, one folder per kind of project: each
// file NAME.tmpl is a text/template that becomes NAME in the project.
//
//go:embed templates
var templates embed.FS

// The kinds of project, as the template folders to write.
const (
	deviceProject = "templates/device"
	ruleProject   = "templates/rule"
)

// scaffold writes the project of the kind and returns the files written.
func scaffold(kind, name, dir, module, luling string) ([]string, error) {
	entries, err := templates.ReadDir(kind)
	if err != nil {
		return nil, err
	}
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
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".tmpl")
		if !ok || e.IsDir() {
			continue
		}
		tmpl, err := template.ParseFS(templates, kind+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", e.Name(), err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(abs, name), buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, filepath.Join(dir, name))
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
