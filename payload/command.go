package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// CommandVersion is the schema version of commands and replies ("v").
const CommandVersion = 1

// Limits of the command schema.
const (
	MaxCommandBytes    = 64 << 10 // largest command body accepted
	MaxCommandArgs     = 32       // arguments per command
	MaxCommandLifetime = 24 * time.Hour
)

// ErrMalformedCommand wraps every error that means a command body does not follow
// schema v1.
var ErrMalformedCommand = errors.New("command does not follow schema v1")

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

func malformedCommand(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformedCommand)
}

// DecodeCommand decodes and strictly validates a command body. Errors wrap
// ErrMalformedCommand and name the field and what was expected.
func DecodeCommand(body []byte) (*Command, error) {
	if len(body) > MaxCommandBytes {
		return nil, malformedCommand("command body of %d bytes: want at most %d", len(body), MaxCommandBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, malformedCommand("empty command body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireCommand
	if err := dec.Decode(&w); err != nil {
		return nil, malformedCommand("command body: %s", commandJSONErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformedCommand("command body: data after the JSON object")
	}
	switch {
	case w.V == nil:
		return nil, malformedCommand(`command: missing "v": want 1`)
	case *w.V != CommandVersion:
		return nil, malformedCommand(`command: "v" is %d: want 1`, *w.V)
	case w.ID == nil:
		return nil, malformedCommand(`command: missing "id"`)
	case !ValidCommandID(*w.ID):
		return nil, malformedCommand(`command: "id" %q: want [A-Za-z0-9_-]{1,64}`, Clip(*w.ID))
	case w.Name == nil:
		return nil, malformedCommand(`command %s: missing "name"`, *w.ID)
	case !ValidCommandName(*w.Name):
		return nil, malformedCommand(`command %s: "name" %q: want dotted lower-case words such as device.write`, *w.ID, Clip(*w.Name))
	}
	c := &Command{ID: *w.ID, Name: *w.Name, Args: map[string]any{}}
	if len(w.Args) > 0 && !bytes.Equal(bytes.TrimSpace(w.Args), []byte("null")) {
		d := json.NewDecoder(bytes.NewReader(w.Args))
		d.UseNumber()
		var args map[string]any
		if err := d.Decode(&args); err != nil || args == nil {
			return nil, malformedCommand(`command %s: "args": want a JSON object`, c.ID)
		}
		if len(args) > MaxCommandArgs {
			return nil, malformedCommand(`command %s: "args" has %d entries: want at most %d`, c.ID, len(args), MaxCommandArgs)
		}
		c.Args = args
	}
	var err error
	if c.Issued, err = parseCommandTime(c.ID, "issued", w.Issued); err != nil {
		return nil, err
	}
	if c.Expires, err = parseCommandTime(c.ID, "expires", w.Expires); err != nil {
		return nil, err
	}
	if !c.Expires.After(c.Issued) {
		return nil, malformedCommand(`command %s: "expires" %s is not after "issued" %s`, c.ID, *w.Expires, *w.Issued)
	}
	if life := c.Expires.Sub(c.Issued); life > MaxCommandLifetime {
		return nil, malformedCommand(`command %s: lives %v from "issued" to "expires": want at most %v`, c.ID, life, MaxCommandLifetime)
	}
	return c, nil
}

func parseCommandTime(id, key string, s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, malformedCommand(`command %s: missing %q: want an RFC 3339 time`, id, key)
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, malformedCommand(`command %s: %q %q: want an RFC 3339 time such as 2026-11-25T19:30:00Z`, id, key, Clip(*s))
	}
	return t, nil
}

// commandJSONErr turns a decoding error into a short description.
func commandJSONErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%q is a JSON %s: want %s", te.Field, te.Value, commandWantType(te.Field))
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

func commandWantType(field string) string {
	switch field {
	case "v":
		return "the number 1"
	case "args":
		return "an object"
	}
	return "a string"
}

// Clip shortens s to 80 bytes for an error message.
func Clip(s string) string {
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
	}{CommandVersion, c.ID, c.Name, args, c.Issued.UTC().Format(time.RFC3339Nano), c.Expires.UTC().Format(time.RFC3339Nano)})
}

// ReplyStatus is a reply's outcome.
type ReplyStatus string

// Reply statuses.
const (
	ReplyOK        ReplyStatus = "ok"        // the command ran and succeeded
	ReplyError     ReplyStatus = "error"     // malformed, refused by its handler, or it failed
	ReplyExpired   ReplyStatus = "expired"   // it arrived after its expiry and did not run
	ReplyDuplicate ReplyStatus = "duplicate" // its id was seen before; it did not run again
	ReplyUnknown   ReplyStatus = "unknown"   // no handler has its name
)

func (s ReplyStatus) valid() bool {
	switch s {
	case ReplyOK, ReplyError, ReplyExpired, ReplyDuplicate, ReplyUnknown:
		return true
	}
	return false
}

// Reply is the gateway's answer to one command (schema v1).
type Reply struct {
	V       int            `json:"v"`
	ID      string         `json:"id"`
	Name    string         `json:"name,omitempty"`
	Status  ReplyStatus    `json:"status"`
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
	c.V = CommandVersion
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

// DecodeReply decodes and validates a reply body. Errors wrap ErrMalformedCommand.
func DecodeReply(body []byte) (*Reply, error) {
	if len(body) > MaxCommandBytes {
		return nil, malformedCommand("reply body of %d bytes: want at most %d", len(body), MaxCommandBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var r Reply
	if err := dec.Decode(&r); err != nil {
		return nil, malformedCommand("reply body: %s", commandJSONErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformedCommand("reply body: data after the JSON object")
	}
	switch {
	case r.V != CommandVersion:
		return nil, malformedCommand(`reply: "v" is %d: want 1`, r.V)
	case !ValidCommandID(r.ID):
		return nil, malformedCommand(`reply: "id" %q: want [A-Za-z0-9_-]{1,64}`, Clip(r.ID))
	case !r.Status.valid():
		return nil, malformedCommand(`reply %s: "status" %q: want ok, error, expired, duplicate or unknown`, r.ID, Clip(string(r.Status)))
	case r.Executed.IsZero():
		return nil, malformedCommand(`reply %s: missing "executed"`, r.ID)
	}
	return &r, nil
}

// ArgValue converts a JSON argument (as DecodeCommand gives it) to a point
// value: a string, a bool, or a number (an integer when written without a
// fraction or exponent).
func ArgValue(v any) (Value, error) {
	switch x := v.(type) {
	case string:
		return String(x), nil
	case bool:
		return Bool(x), nil
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return Int(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return Value{}, fmt.Errorf("number %s is out of range", x)
		}
		return Float(f), nil
	case float64:
		return Float(x), nil
	case int:
		return Int(int64(x)), nil
	case int64:
		return Int(x), nil
	case nil:
		return Value{}, errors.New("null: want a string, bool or number")
	}
	return Value{}, fmt.Errorf("a JSON %s: want a string, bool or number", JSONKind(v))
}

// JSONKind names the JSON type of a decoded value (array, object, or its Go
// type) for an error message.
func JSONKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
