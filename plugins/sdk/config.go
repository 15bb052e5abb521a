package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/internal/suggest"
)

// DecodeConfig decodes a plugin's config (Env.Config) into v, a pointer to a
// struct with json tags. Unknown keys are errors, so a typo is caught at
// startup; errors name the key and say what was expected, and wrap
// ErrInvalid.
func DecodeConfig(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return fmt.Errorf("config: trailing data after the object: %w", ErrInvalid)
		}
		return nil
	}
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr):
		key := typeErr.Field
		if p := pathAt(raw, typeErr.Offset); p != "" {
			// encoding/json leaves map keys out of Field; the path
			// from the bytes has them: zones.north.capacity.
			key = p
		}
		if key == "" {
			return fmt.Errorf("config: got a JSON %s, want %s: %w", typeErr.Value, typeErr.Type, ErrInvalid)
		}
		return fmt.Errorf("config: key %q: got a JSON %s, want %s: %w", key, typeErr.Value, typeErr.Type, ErrInvalid)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("config: not valid JSON at byte %d: %v: %w", syntaxErr.Offset, err, ErrInvalid)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("config: not valid JSON: it ends early: %w", ErrInvalid)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if name, uerr := strconv.Unquote(key); uerr == nil {
			if hint := suggest.Closest(name, jsonKeys(reflect.TypeOf(v), nil, 0)); hint != "" {
				return fmt.Errorf("config: unknown key %s (did you mean %s?): %w", key, hint, ErrInvalid)
			}
		}
		return fmt.Errorf("config: unknown key %s: %w", key, ErrInvalid)
	}
	return fmt.Errorf("config: %v: %w", err, ErrInvalid)
}

// pathAt returns the path (keys joined by dots, [i] for array elements) of
// the JSON value that ends at offset off of raw, or "" when there is none.
func pathAt(raw []byte, off int64) string {
	type level struct {
		obj     bool
		key     string
		idx     int
		wantKey bool
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.obj {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			} else {
				fmt.Fprintf(&b, "[%d]", l.idx)
			}
		}
		return b.String()
	}
	done := func() { // the value at the top's current place is complete
		if n := len(stack); n > 0 {
			if stack[n-1].obj {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].idx++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
			if k, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].wantKey = k, false
				continue
			}
		}
		here := path()
		switch tok {
		case json.Delim('{'), json.Delim('['):
			// A container of the wrong type is reported just after its
			// opening delimiter.
			if dec.InputOffset() >= off {
				return here
			}
			stack = append(stack, level{obj: tok == json.Delim('{'), wantKey: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			here = path()
			done()
		default:
			done()
		}
		if dec.InputOffset() >= off {
			return here
		}
	}
}

// jsonKeys lists the JSON keys of the struct t (through pointers, slices
// and maps), nested structs included, for "did you mean" on an unknown key:
// encoding/json names the key but not the struct it was found in.
func jsonKeys(t reflect.Type, out []string, depth int) []string {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || depth > 8 {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case name == "" && f.Anonymous:
			out = jsonKeys(f.Type, out, depth+1)
			continue
		case name == "":
			name = f.Name
		}
		out = append(out, name)
		out = jsonKeys(f.Type, out, depth+1)
	}
	return out
}
