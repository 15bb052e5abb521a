package yamlx

import "github.com/luling-edge/luling/internal/suggest"

// Suggest returns "did you mean X?" when a known name is close to s, or
// else lists the known names after label (package suggest).
func Suggest(s string, known []string, label string) string { return suggest.Hint(s, known, label) }
