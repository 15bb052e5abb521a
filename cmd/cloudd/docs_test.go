package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestFlagsDocumented keeps the flags table of docs/cloudd.md and the flags
// in step: every flag in -h has a row, every row names real flags.
func TestFlagsDocumented(t *testing.T) {
	var usage bytes.Buffer
	run(context.Background(), []string{"-h"}, strings.NewReader(""), io.Discard, &usage)
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(usage.String(), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("found %d flags in the usage text:\n%s", len(flags), usage.String())
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "cloudd.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, m := range regexp.MustCompile("`-([a-z0-9-]+)`").FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	var missing, unknown []string
	for f := range flags {
		if !documented[f] {
			missing = append(missing, "-"+f)
		}
	}
	for f := range documented {
		if !flags[f] {
			unknown = append(unknown, "-"+f)
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	if len(missing) > 0 || len(unknown) > 0 {
		t.Errorf("docs/cloudd.md flags table: missing %v, describes flags that do not exist %v", missing, unknown)
	}
}
