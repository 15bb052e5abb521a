// Package simgpio links a gateway to GPIO lines that another process
// simulates, over a unix socket: for rehearsing doors, exit buttons,
// Wiegand readers and relays on a laptop or a bench rig without the
// board's gpiochip.
//
// Concepts:
//
//   - The simulator (Server, run by devsim) owns the lines: it drives the
//     inputs (a door contact opening, an exit button, Wiegand D0/D1 pulses)
//     and records what the gateway writes to the outputs (strike relays,
//     LEDs), with times.
//
//   - The gateway side (Client) hands out Pins that implement periph's
//     gpio.PinIO, so doors, the Wiegand reader and the gpio driver take the
//     same code path as with a gpioioctl line. A Pin is a virtual pin
//     (drivers/gpio/vpin) kept in step with the simulator: level changes
//     arrive with the simulator's time of the change, which the pin reports
//     through LastEdge, so Wiegand bit timing survives the socket.
//
//   - The link is one JSON object per line (Message). On connect the
//     simulator sends hello with every line it serves and its level; then
//     level messages for every change. The gateway sends out messages for
//     what it writes. A line the simulator does not serve cannot be opened:
//     the error names it and lists the lines that are served.
//     A simulator in another language only needs to speak these lines:
//
//     {"op":"hello","v":1,"lines":[{"line":"gpiochip0:17","level":"low"},{"line":"gpiochip0:22","level":"high"}]}
//     {"op":"level","line":"gpiochip0:22","level":"low","t":1764866400123456789}
//     {"op":"out","line":"gpiochip0:17","level":"high","t":1764866400223456789}
//
//     (t is the Unix time of the change in nanoseconds). A message that
//     does not decode ends the connection; the gateway reconnects.
//
//   - The Client reconnects when the simulator restarts: it takes the new
//     levels (a change while it was away becomes an edge) and writes its
//     outputs' levels again, so a strike is never left energized by a
//     restart.
package simgpio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"

	"periph.io/x/conn/v3/gpio"
)

// Version is the protocol version hello carries.
const Version = 1

// MaxMessage bounds one encoded message (a hello with many lines).
const MaxMessage = 64 << 10

// Operations of a Message.
const (
	OpHello = "hello" // simulator → gateway: version and the lines served
	OpLevel = "level" // simulator → gateway: an input changed level
	OpOut   = "out"   // gateway → simulator: the gateway set an output
)

// Message is one line of the link.
type Message struct {
	Op    string     `json:"op"`
	V     int        `json:"v,omitempty"`     // hello
	Lines []LineInfo `json:"lines,omitempty"` // hello
	Line  string     `json:"line,omitempty"`  // level, out
	Level Level      `json:"level,omitempty"` // level, out
	T     int64      `json:"t,omitempty"`     // level, out: Unix nanoseconds of the change
}

// LineInfo is a served line and its level, in hello.
type LineInfo struct {
	Line  string `json:"line"`
	Level Level  `json:"level"`
}

// Level is a line level as the link writes it: "high" or "low".
type Level string

// Levels.
const (
	High Level = "high"
	Low  Level = "low"
)

// LevelOf converts a periph level.
func LevelOf(l gpio.Level) Level {
	if l == gpio.High {
		return High
	}
	return Low
}

// GPIO converts to a periph level.
func (l Level) GPIO() gpio.Level { return l == High }

// Time is the message's time.
func (m Message) Time() time.Time { return time.Unix(0, m.T) }

// ErrMessage is wrapped by every decoding error.
var ErrMessage = errors.New("bad GPIO simulator message")

// Encode writes m as one line (with its newline).
func Encode(m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes: want at most %d", ErrMessage, len(b)+1, MaxMessage)
	}
	return append(b, '\n'), nil
}

// Decode reads one line (without its newline). The error says what was
// wrong and wraps ErrMessage.
func Decode(line []byte) (Message, error) {
	var m Message
	if len(line) > MaxMessage {
		return m, fmt.Errorf("%w: %d bytes: want at most %d", ErrMessage, len(line), MaxMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: more than one JSON object on the line", ErrMessage)
	}
	if err := m.check(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func (m Message) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMessage, m.Op, fmt.Sprintf(format, a...))
	}
	switch m.Op {
	case OpHello:
		if m.V != Version {
			return bad("version %d: want %d", m.V, Version)
		}
		if m.Line != "" || m.Level != "" || m.T != 0 {
			return bad("line, level and t belong to level and out messages")
		}
		seen := map[string]bool{}
		for i, l := range m.Lines {
			if err := checkName(l.Line); err != nil {
				return bad("lines[%d]: %v", i, err)
			}
			if seen[l.Line] {
				return bad("lines[%d]: line %q twice", i, l.Line)
			}
			seen[l.Line] = true
			if l.Level != High && l.Level != Low {
				return bad("lines[%d] (%s): level %q: want high or low", i, l.Line, l.Level)
			}
		}
		return nil
	case OpLevel, OpOut:
		if m.V != 0 || m.Lines != nil {
			return bad("v and lines belong to hello")
		}
		if err := checkName(m.Line); err != nil {
			return bad("%v", err)
		}
		if m.Level != High && m.Level != Low {
			return bad("line %s: level %q: want high or low", m.Line, m.Level)
		}
		if m.T <= 0 {
			return bad("line %s: t %d: want the Unix time of the change in nanoseconds", m.Line, m.T)
		}
		return nil
	case "":
		return fmt.Errorf("%w: no op: want hello, level or out", ErrMessage)
	}
	return fmt.Errorf("%w: unknown op %q: want hello, level or out", ErrMessage, m.Op)
}

// checkName accepts a line name as the gateway config writes pins:
// 1 to 64 printable characters without spaces.
func checkName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("line name %q: want 1 to 64 characters", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("line name %q: want printable characters without spaces", s)
		}
	}
	return nil
}
