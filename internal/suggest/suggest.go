// Package suggest finds the name someone probably meant: the "did you mean
// poll?" of config, profile and plugin-config errors. It is a leaf that
// imports nothing but the standard library, so that the plugin SDK shares
// it without taking on a YAML parser.
package suggest

import (
	"fmt"
	"strings"
)

// Hint returns "did you mean X?" when a known name is close to s (an
// edit distance of at most 2, or 1 for names of up to 4 letters), or else
// lists the known names after label ("known keys: a, b, c"). It returns ""
// when nothing is known.
func Hint(s string, known []string, label string) string {
	if best := Closest(s, known); best != "" {
		return fmt.Sprintf("did you mean %s?", best)
	}
	if len(known) == 0 {
		return ""
	}
	list := known
	more := ""
	if len(list) > 12 {
		list, more = list[:12], ", …"
	}
	return label + ": " + strings.Join(list, ", ") + more
}

// Closest returns the known name closest to s when it is close enough to
// be a typo of it, or "".
func Closest(s string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if dist := Distance(strings.ToLower(s), strings.ToLower(k)); dist < bestD {
			best, bestD = k, dist
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if best != "" && bestD <= limit {
		return best
	}
	return ""
}

// Distance is the edit distance of a and b in bytes. Strings longer
// than 64 bytes are either equal (0) or far apart.
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
