package all_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
	_ "github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/internal/schema"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the driver options section of docs/config.md")

const (
	docsFile  = "../../docs/config.md"
	beginMark = "<!-- driver options: generated from drivers.Info by go test ./drivers/all -update-docs; do not edit -->"
	endMark   = "<!-- end of driver options -->"
)

// optionsDoc renders what every registered driver says of itself: what a
// device needs, its options and an example.
func optionsDoc() string {
	var b strings.Builder
	for _, name := range drivers.Names() {
		info, _ := drivers.Lookup(name)
		fmt.Fprintf(&b, "#### driver `%s`\n\n%s.", name, upperFirst(info.Description))
		var needs []string
		if info.Bus != nil {
			needs = append(needs, fmt.Sprintf("a `bus` and a `unit` %d..%d on it", info.Bus.Min, info.Bus.Max))
		}
		if info.Profile {
			needs = append(needs, "a `profile`")
		}
		if len(needs) > 0 {
			fmt.Fprintf(&b, " A device needs %s.", strings.Join(needs, " and "))
		}
		if info.CardReader {
			b.WriteString(" Its devices read cards: a door may list them under `readers`.")
		}
		b.WriteString("\n\n")
		if len(info.Options) == 0 {
			b.WriteString("No options.\n\n")
		} else {
			b.WriteString("| option | type | default | |\n|---|---|---|---|\n")
			for _, f := range info.Options {
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Key, kind(f), def(f), f.Doc)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "```yaml\ndevices:\n%s\n```\n\n", indent(info.Example))
	}
	return strings.TrimSpace(b.String())
}

func kind(f schema.Field) string {
	switch {
	case len(f.OneOf) > 0:
		return "`" + strings.Join(f.OneOf, "` \\| `") + "`"
	case f.Kind == schema.Int && (f.Min != 0 || f.Max != 0):
		return fmt.Sprintf("integer %d..%d", f.Min, f.Max)
	}
	return string(f.Kind)
}

func def(f schema.Field) string {
	switch {
	case f.Required:
		return "**required**"
	case f.Default != "":
		return "`" + f.Default + "`"
	}
	return ""
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// TestDocsListDriverOptions keeps the driver options section of
// docs/config.md what the drivers' schemas say.
func TestDocsListDriverOptions(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s has no section between %q and %q", docsFile, beginMark, endMark)
	}
	got := strings.TrimSpace(doc[i+len(beginMark) : j])
	want := optionsDoc()
	if got == want {
		return
	}
	if *updateDocs {
		doc = doc[:i+len(beginMark)] + "\n\n" + want + "\n\n" + doc[j:]
		if err := os.WriteFile(docsFile, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/config.md's driver options differ from the drivers' schemas; run go test ./drivers/all -update-docs\n--- doc\n%s\n--- schemas\n%s", got, want)
}
