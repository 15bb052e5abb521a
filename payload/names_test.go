package payload

import (
	"regexp"
	"strings"
	"testing"
)

// The rules as the regexps the byte comparisons replaced.
var rules = []struct {
	name string
	fn   func(string) bool
	want func(string) bool
}{
	{"ValidID", ValidID, regexp.MustCompile(`^[a-z0-9-]{1,64}$`).MatchString},
	{"ValidDeviceID", ValidDeviceID, regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`).MatchString},
	{"ValidIdent", ValidIdent, regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString},
	{"ValidCommandID", ValidCommandID, regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`).MatchString},
	{"ValidCommandName", ValidCommandName, func(s string) bool {
		return len(s) <= 64 && cmdNamePattern.MatchString(s)
	}},
}

var cmdNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

var nameSeeds = []string{
	"", "a", "-", "_", ".", "0", "Z", "bay-017", "bay_17.a", "gw-1", "x y", "a\n", "\na", "ä", "a\xff",
	"device.write", "device.", ".device", "a..b", "a.b_9.c", "A.b", "a.9", "9a", "_x9", "x-y", "cmd-01_A",
	strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("a.", 32), strings.Repeat("b", 200),
}

func TestNameRules(t *testing.T) {
	for _, r := range rules {
		for _, s := range nameSeeds {
			if got, want := r.fn(s), r.want(s); got != want {
				t.Errorf("%s(%q) = %v, the rule's regexp says %v", r.name, s, got, want)
			}
		}
	}
	if !ValidCommandName("device.write") || ValidCommandName(strings.Repeat("a", 65)) {
		t.Error("ValidCommandName: device.write refused or 65 characters taken")
	}
}

// FuzzNameRules checks every byte-comparing rule against its regexp.
func FuzzNameRules(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range rules {
			if got, want := r.fn(s), r.want(s); got != want {
				t.Fatalf("%s(%q) = %v, the rule's regexp says %v", r.name, s, got, want)
			}
		}
	})
}
