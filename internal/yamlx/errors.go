package yamlx

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one mistake in a YAML file, at the place where it was found.
type Error struct {
	File string // the name the file was loaded under
	Line int    // 1-based line; always set
	Col  int    // 1-based column; 0 when only the line is known (YAML syntax errors)
	Path string // the key, e.g. "buses[1].port" or "devices[3].unit"; "" for syntax errors
	Msg  string // what is wrong
	Hint string // how to fix it; may be empty
}

// Error formats the error as FILE:LINE:COL: path: message (hint).
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	fmt.Fprintf(&b, ":%d:", e.Line)
	if e.Col > 0 {
		fmt.Fprintf(&b, "%d:", e.Col)
	}
	b.WriteByte(' ')
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteByte(')')
	}
	return b.String()
}

// Errors is every mistake found in one file, sorted by position.
type Errors struct {
	List []Error
}

// Error joins the errors, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, x := range e.List {
		out[i] = x
	}
	return out
}

// Sorted orders the errors by line, column and path, and drops repeats of
// one mistake at one place (a template that is wrong in a block expanded
// several times would otherwise be reported once per expansion). It
// reuses list's storage.
func Sorted(list []Error) []Error {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Path < b.Path
	})
	out := list[:0]
	type key struct {
		line, col int
		path      string
	}
	seen := map[key]bool{}
	for _, e := range list {
		k := key{e.Line, e.Col, e.Path}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out
}
