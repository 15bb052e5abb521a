package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/luling-edge/luling/gateway/payload"
)

// Version is the schema version of commands and replies ("v").
const Version = 1

// Limits of the command schema.
const (
	MaxBodyBytes = 64 << 10 // largest command body accepted
	MaxArgs      = 32       // arguments per command
	MaxLifetime  = 24 * time.Hour
)

// ErrMalformed wraps every error that means a command body does not follow
// schema v1.
var ErrMalformed = errors.New("command does not follow schema v1")

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
)

// ValidID reports whether s can be a command id: [A-Za-z0-9_-]{1,64}. The id
// is also the last topic level, so it never holds '/', '+' or '#'.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidName reports whether s can be a command name: dotted lower-case
// words such as device.write, at most 64 characters.
func ValidName(s string) bool { return len(s) <= 64 && namePattern.MatchString(s) }

// Command is one command from the cloud (schema v1).
type Command struct {
	ID      string         // [A-Za-z0-9_-]{1,64}; equals the topic's last level
	Name    string         // a registered command such as device.write
	Args    map[string]any // JSON values: string, bool, json.Number, []any, map[string]any, nil
	Issued  time.Time      // when the cloud issued it
	Expires time.Time      // after this instant the gateway does not run it
}

type wireCommand struct {
	V       *int            `json:"v"`
	ID      *string         `json:"id"`
	Name    *string         `json:"name"`
	Args    json.RawMessage `json:"args"`
	Issued  *string         `json:"issued"`
	Expires *string         `json:"expires"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformed)
}

// DecodeCommand decodes and strictly validates a command body. Errors wrap
// ErrMalformed and name the field and what was expected.
func DecodeCommand(body []byte) (*Command, error) {
	if len(body) > MaxBodyBytes {
		return nil, malformed("command body of %d bytes: want at most %d", len(body), MaxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, malformed("empty command body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireCommand
	if err := dec.Decode(&w); err != nil {
		return nil, malformed("command body: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("command body: data after the JSON object")
	}
	switch {
	case w.V == nil:
		return nil, malformed(`command: missing "v": want 1`)
	case *w.V != Version:
		return nil, malformed(`command: "v" is %d: want 1`, *w.V)
	case w.ID == nil:
		return nil, malformed(`command: missing "id"`)
	case !ValidID(*w.ID):
		return nil, malformed(`command: "id" %q: want [A-Za-z0-9_-]{1,64}`, clip(*w.ID))
	case w.Name == nil:
		return nil, malformed(`command %s: missing "name"`, *w.ID)
	case !ValidName(*w.Name):
		return nil, malformed(`command %s: "name" %q: want dotted lower-case words such as device.write`, *w.ID, clip(*w.Name))
	}
	c := &Command{ID: *w.ID, Name: *w.Name, Args: map[string]any{}}
	if len(w.Args) > 0 && !bytes.Equal(bytes.TrimSpace(w.Args), []byte("null")) {
		d := json.NewDecoder(bytes.NewReader(w.Args))
		d.UseNumber()
		var args map[string]any
		if err := d.Decode(&args); err != nil || args == nil {
			return nil, malformed(`command %s: "args": want a JSON object`, c.ID)
		}
		if len(args) > MaxArgs {
			return nil, malformed(`command %s: "args" has %d entries: want at most %d`, c.ID, len(args), MaxArgs)
		}
		c.Args = args
	}
	var err error
	if c.Issued, err = parseTime(c.ID, "issued", w.Issued); err != nil {
		return nil, err
	}
	if c.Expires, err = parseTime(c.ID, "expires", w.Expires); err != nil {
		return nil, err
	}
	if !c.Expires.After(c.Issued) {
		return nil, malformed(`command %s: "expires" %s is not after "issued" %s`, c.ID, *w.Expires, *w.Issued)
	}
	if life := c.Expires.Sub(c.Issued); life > MaxLifetime {
		return nil, malformed(`command %s: lives %v from "issued" to "expires": want at most %v`, c.ID, life, MaxLifetime)
	}
	return c, nil
}

func parseTime(id, key string, s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, malformed(`command %s: missing %q: want an RFC 3339 time`, id, key)
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, malformed(`command %s: %q %q: want an RFC 3339 time such as 2026-11-25T19:30:00Z`, id, key, clip(*s))
	}
	return t, nil
}

// jsonErr turns a decoding error into a short description.
func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%q is a JSON %s: want %s", te.Field, te.Value, wantType(te.Field))
		}
		return fmt.Sprintf("a JSON %s: want an object", te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown key " + f + `: want v, id, name, args, issued, expires`
	}
	return msg
}

func wantType(field string) string {
	switch field {
	case "v":
		return "the number 1"
	case "args":
		return "an object"
	}
	return "a string"
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Encode returns the command's JSON body (schema v1).
func (c *Command) Encode() ([]byte, error) {
	args := c.Args
	if args == nil {
		args = map[string]any{}
	}
	return json.Marshal(struct {
		V       int            `json:"v"`
		ID      string         `json:"id"`
		Name    string         `json:"name"`
		Args    map[string]any `json:"args"`
		Issued  string         `json:"issued"`
		Expires string         `json:"expires"`
	}{Version, c.ID, c.Name, args, c.Issued.UTC().Format(time.RFC3339Nano), c.Expires.UTC().Format(time.RFC3339Nano)})
}

// Status is a reply's outcome.
type Status string

// Reply statuses.
const (
	StatusOK        Status = "ok"        // the command ran and succeeded
	StatusError     Status = "error"     // malformed, refused by its handler, or it failed
	StatusExpired   Status = "expired"   // it arrived after its expiry and did not run
	StatusDuplicate Status = "duplicate" // its id was seen before; it did not run again
	StatusUnknown   Status = "unknown"   // no handler has its name
)

func (s Status) valid() bool {
	switch s {
	case StatusOK, StatusError, StatusExpired, StatusDuplicate, StatusUnknown:
		return true
	}
	return false
}

// Reply is the gateway's answer to one command (schema v1).
type Reply struct {
	V       int            `json:"v"`
	ID      string         `json:"id"`
	Name    string         `json:"name,omitempty"`
	Status  Status         `json:"status"`
	Message string         `json:"message,omitempty"`
	Result  map[string]any `json:"result,omitempty"`
	// Executed is when the gateway finished with the command (for a
	// duplicate: when it answered the duplicate; Result["original"] holds
	// the first reply).
	Executed time.Time `json:"executed"`
}

// Encode returns the reply's JSON body.
func (r *Reply) Encode() []byte {
	c := *r
	c.V = Version
	c.Executed = c.Executed.UTC()
	b, err := json.Marshal(&c)
	if err != nil {
		// A result a handler built that JSON cannot carry (NaN, a channel):
		// the reply still goes out, without it.
		c.Result = nil
		c.Message = strings.TrimSpace(c.Message + " (result not encodable: " + err.Error() + ")")
		b, _ = json.Marshal(&c)
	}
	return b
}

// DecodeReply decodes and validates a reply body. Errors wrap ErrMalformed.
func DecodeReply(body []byte) (*Reply, error) {
	if len(body) > MaxBodyBytes {
		return nil, malformed("reply body of %d bytes: want at most %d", len(body), MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var r Reply
	if err := dec.Decode(&r); err != nil {
		return nil, malformed("reply body: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("reply body: data after the JSON object")
	}
	switch {
	case r.V != Version:
		return nil, malformed(`reply: "v" is %d: want 1`, r.V)
	case !ValidID(r.ID):
		return nil, malformed(`reply: "id" %q: want [A-Za-z0-9_-]{1,64}`, clip(r.ID))
	case !r.Status.valid():
		return nil, malformed(`reply %s: "status" %q: want ok, error, expired, duplicate or unknown`, r.ID, clip(string(r.Status)))
	case r.Executed.IsZero():
		return nil, malformed(`reply %s: missing "executed"`, r.ID)
	}
	return &r, nil
}

// Value converts a JSON argument (as DecodeCommand gives it) to a point
// value: a string, a bool, or a number (an integer when written without a
// fraction or exponent).
func Value(v any) (payload.Value, error) {
	switch x := v.(type) {
	case string:
		return payload.String(x), nil
	case bool:
		return payload.Bool(x), nil
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return payload.Int(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return payload.Value{}, fmt.Errorf("number %s is out of range", x)
		}
		return payload.Float(f), nil
	case float64:
		return payload.Float(x), nil
	case int:
		return payload.Int(int64(x)), nil
	case int64:
		return payload.Int(x), nil
	case nil:
		return payload.Value{}, errors.New("null: want a string, bool or number")
	}
	return payload.Value{}, fmt.Errorf("a JSON %s: want a string, bool or number", jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
