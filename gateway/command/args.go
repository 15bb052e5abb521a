package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/luling-edge/luling/payload"
)

// Args reads a command's arguments strictly: every getter records what it
// expected, and Err reports every missing, mistyped or unknown argument at
// once.
type Args struct {
	m    map[string]any
	used map[string]bool
	errs []error
}

// NewArgs wraps a command's arguments.
func NewArgs(m map[string]any) *Args { return &Args{m: m, used: map[string]bool{}} }

func (a *Args) get(key string, required bool) (any, bool) {
	a.used[key] = true
	v, ok := a.m[key]
	if !ok && required {
		a.errs = append(a.errs, fmt.Errorf("missing argument %q", key))
	}
	return v, ok
}

// String returns a required, non-empty string argument.
func (a *Args) String(key string) string {
	v, ok := a.get(key, true)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr || s == "" {
		a.errs = append(a.errs, fmt.Errorf("argument %q is %s: want a non-empty string", key, describe(v)))
	}
	return s
}

// Value returns a required point value (string, bool or number).
func (a *Args) Value(key string) payload.Value {
	v, ok := a.get(key, true)
	if !ok {
		return payload.Value{}
	}
	pv, err := payload.ArgValue(v)
	if err != nil {
		a.errs = append(a.errs, fmt.Errorf("argument %q is %w", key, err))
	}
	return pv
}

// Duration returns a required duration argument, given as a Go duration
// string ("1.5s", "500ms") or a number of seconds, within lo..hi.
func (a *Args) Duration(key string, lo, hi time.Duration) time.Duration {
	v, ok := a.get(key, true)
	if !ok {
		return 0
	}
	var d time.Duration
	var err error
	switch x := v.(type) {
	case string:
		d, err = time.ParseDuration(x)
	case json.Number:
		var f float64
		if f, err = x.Float64(); err == nil {
			d = time.Duration(f * float64(time.Second))
		}
	case float64:
		d = time.Duration(x * float64(time.Second))
	default:
		err = errors.New("not a duration")
	}
	if err != nil || d < lo || d > hi {
		a.errs = append(a.errs, fmt.Errorf("argument %q is %s: want a duration from %v to %v (\"1.5s\" or seconds)", key, describe(v), lo, hi))
		return 0
	}
	return d
}

// Err returns the errors collected so far plus one for every argument that
// no getter asked for; nil when the arguments are as expected.
func (a *Args) Err() error {
	var extra []string
	for k := range a.m {
		if !a.used[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	errs := a.errs
	if len(extra) > 0 {
		want := make([]string, 0, len(a.used))
		for k := range a.used {
			want = append(want, k)
		}
		sort.Strings(want)
		w := "no arguments"
		if len(want) > 0 {
			w = strings.Join(want, ", ")
		}
		errs = append(errs, fmt.Errorf("unknown argument %s: want %s", quoteAll(extra), w))
	}
	return errors.Join(errs...)
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", payload.Clip(s))
	}
	return strings.Join(q, ", ")
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", payload.Clip(x))
	case json.Number:
		return "the number " + string(x)
	case bool:
		return fmt.Sprintf("%v", x)
	case nil:
		return "null"
	}
	return "a JSON " + payload.JSONKind(v)
}
