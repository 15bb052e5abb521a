package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
		return fmt.Errorf("config: unknown key %s: %w", key, ErrInvalid)
	}
	return fmt.Errorf("config: %v: %w", err, ErrInvalid)
}
