package payload

import (
	"regexp"
	"strings"
	"testing"
)

// namePattern is ValidName's rule as the regexp it replaced.
var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"parking_bay", true}, {"_x", true}, {"a.b-c_9", true}, {"Z", true}, {strings.Repeat("a", 128), true},
		{"", false}, {"9lives", false}, {".x", false}, {"-x", false}, {"a b", false}, {"ä", false}, {"a\x00", false},
		{strings.Repeat("a", 129), false}, {"x/y", false},
	} {
		if got := ValidName(c.s); got != c.ok {
			t.Errorf("ValidName(%q) = %v, want %v", c.s, got, c.ok)
		}
	}
}

// FuzzValidName checks ValidName against the regexp of its rule.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"parking_bay", "_", "9a", "a.b-c", "", "ä", strings.Repeat("b", 128), strings.Repeat("b", 129), "a\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidName(s), namePattern.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, the rule's regexp says %v", s, got, want)
		}
	})
}
