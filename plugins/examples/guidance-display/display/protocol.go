// Package display is the driver for parking guidance displays: the signs
// at a lot's entrances and aisle junctions that show how many bays are
// free ahead. It is the example device plugin of the Luling plugin SDK
// (see docs/plugins.md); the program in the parent folder serves it.
//
// # Wire protocol
//
// The displays hang on an RS-485 line (9600 8N1) and speak a framed ASCII
// protocol. Every frame, request or reply:
//
//	STX  addr  cmd  data  sum  ETX
//	0x02 2 hex 1 ch 0..32 2 hex 0x03
//
// addr is the display address, 01..FE in uppercase hex (00 is a broadcast
// that no display answers). cmd is one letter. data is printable ASCII
// (0x20..0x7E). sum is the sum of the bytes of addr, cmd and data modulo
// 256, in two uppercase hex digits. Commands and their replies:
//
//	Q            query    → q NNNN,BB,STTT,FF  shown count (or ---- when
//	                                             blank), brightness 00..15,
//	                                             temperature in 0.1 °C with
//	                                             sign, fault bits in hex
//	D NNNN       show     → d NNNN             show a count 0000..9999
//	B BB         bright   → b BB               set brightness 00..15
//	any          error    → N EE               01 checksum, 02 unknown
//	                                             command, 03 bad data
//
// Fault bits: 0x01 LED module failure, 0x02 over-temperature, 0x04 power
// supply. A reply ends with ETX and is at most 40 bytes, so the bus
// arbiter finds its end with the rule "starts with STX, ends with ETX".
package display

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Framing bytes.
const (
	STX = 0x02
	ETX = 0x03
)

// Limits of the protocol.
const (
	MaxData    = 32
	MaxFrame   = 1 + 2 + 1 + MaxData + 2 + 1
	MaxCount   = 9999
	MaxBright  = 15
	minFrame   = 1 + 2 + 1 + 2 + 1
	Broadcast  = 0
	MaxAddress = 0xFE
)

// Fault bits.
const (
	FaultLED         = 0x01
	FaultOverTemp    = 0x02
	FaultPowerSupply = 0x04
)

// FaultCodes names the fault bits, as the `code` tag of fault events.
var FaultCodes = []struct {
	Bit  int
	Code string
}{{FaultLED, "led_module"}, {FaultOverTemp, "over_temp"}, {FaultPowerSupply, "power_supply"}}

// Frame is one decoded frame.
type Frame struct {
	Addr int
	Cmd  byte
	Data string
}

// ErrFrame marks bytes that are not a valid frame.
var ErrFrame = errors.New("invalid display frame")

const hexDigits = "0123456789ABCDEF"

func appendHex(dst []byte, b byte) []byte { return append(dst, hexDigits[b>>4], hexDigits[b&15]) }

// Sum is the frame checksum of addr, cmd and data.
func Sum(body []byte) byte {
	var s byte
	for _, c := range body {
		s += c
	}
	return s
}

// Append encodes a frame. It refuses addresses, commands and data that the
// protocol cannot carry.
func Append(dst []byte, f Frame) ([]byte, error) {
	if f.Addr < 0 || f.Addr > MaxAddress {
		return dst, fmt.Errorf("display: address %d out of range 0..%d", f.Addr, MaxAddress)
	}
	if !isLetter(f.Cmd) {
		return dst, fmt.Errorf("display: command %q is not a letter", f.Cmd)
	}
	if len(f.Data) > MaxData {
		return dst, fmt.Errorf("display: %d data bytes, at most %d", len(f.Data), MaxData)
	}
	for i := 0; i < len(f.Data); i++ {
		if c := f.Data[i]; c < 0x20 || c > 0x7E {
			return dst, fmt.Errorf("display: data byte %#02x at %d is not printable ASCII", c, i)
		}
	}
	dst = append(dst, STX)
	start := len(dst)
	dst = appendHex(dst, byte(f.Addr))
	dst = append(dst, f.Cmd)
	dst = append(dst, f.Data...)
	dst = appendHex(dst, Sum(dst[start:]))
	return append(dst, ETX), nil
}

func unhex(b []byte) (byte, bool) {
	if len(b) != 2 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b), 16, 8)
	if err != nil || strings.ToUpper(string(b)) != string(b) {
		return 0, false
	}
	return byte(v), true
}

// Decode decodes one complete frame. Errors wrap ErrFrame and say what was
// expected where.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if len(b) < minFrame || len(b) > MaxFrame {
		return f, fmt.Errorf("%w: %d bytes, want %d..%d", ErrFrame, len(b), minFrame, MaxFrame)
	}
	if b[0] != STX {
		return f, fmt.Errorf("%w: byte 0 is %#02x, want STX", ErrFrame, b[0])
	}
	if b[len(b)-1] != ETX {
		return f, fmt.Errorf("%w: last byte is %#02x, want ETX", ErrFrame, b[len(b)-1])
	}
	body := b[1 : len(b)-3]
	addr, ok := unhex(body[:2])
	if !ok {
		return f, fmt.Errorf("%w: address %q at byte 1 is not two uppercase hex digits", ErrFrame, body[:2])
	}
	sum, ok := unhex(b[len(b)-3 : len(b)-1])
	if !ok {
		return f, fmt.Errorf("%w: checksum %q at byte %d is not two uppercase hex digits", ErrFrame, b[len(b)-3:len(b)-1], len(b)-3)
	}
	if got := Sum(body); got != sum {
		return f, fmt.Errorf("%w: checksum %02X, frame says %02X", ErrFrame, got, sum)
	}
	f.Addr, f.Cmd = int(addr), body[2]
	if !isLetter(f.Cmd) {
		return f, fmt.Errorf("%w: command byte %#02x at 3 is not a letter", ErrFrame, f.Cmd)
	}
	for i, c := range body[3:] {
		if c < 0x20 || c > 0x7E {
			return f, fmt.Errorf("%w: data byte %#02x at %d is not printable ASCII", ErrFrame, c, 4+i)
		}
	}
	f.Data = string(body[3:])
	return f, nil
}

// Status is a display's answer to Q.
type Status struct {
	Blank      bool
	Shown      int
	Brightness int
	TempC      float64
	Faults     int
}

// FormatStatus is the data of a q reply.
func FormatStatus(s Status) string {
	shown := "----"
	if !s.Blank {
		shown = fmt.Sprintf("%04d", s.Shown)
	}
	t := int(s.TempC * 10)
	sign := '+'
	if t < 0 {
		sign, t = '-', -t
	}
	return fmt.Sprintf("%s,%02d,%c%03d,%02X", shown, s.Brightness, sign, t, s.Faults)
}

// ParseStatus parses the data of a q reply.
func ParseStatus(data string) (Status, error) {
	var s Status
	parts := strings.Split(data, ",")
	if len(parts) != 4 {
		return s, fmt.Errorf("%w: status %q has %d fields, want 4 (count,brightness,temp,faults)", ErrFrame, data, len(parts))
	}
	if parts[0] == "----" {
		s.Blank = true
	} else if n, err := digits(parts[0], 4); err == nil {
		s.Shown = n
	} else {
		return s, fmt.Errorf("%w: status count %q: want 4 digits or ----", ErrFrame, parts[0])
	}
	n, err := digits(parts[1], 2)
	if err != nil || n > MaxBright {
		return s, fmt.Errorf("%w: status brightness %q: want 00..%02d", ErrFrame, parts[1], MaxBright)
	}
	s.Brightness = n
	t := parts[2]
	if len(t) != 4 || (t[0] != '+' && t[0] != '-') {
		return s, fmt.Errorf("%w: status temperature %q: want a sign and 3 digits", ErrFrame, t)
	}
	n, err = digits(t[1:], 3)
	if err != nil {
		return s, fmt.Errorf("%w: status temperature %q: want a sign and 3 digits", ErrFrame, t)
	}
	s.TempC = float64(n) / 10
	if t[0] == '-' {
		s.TempC = -s.TempC
	}
	f, ok := unhex([]byte(parts[3]))
	if len(parts[3]) != 2 || !ok {
		return s, fmt.Errorf("%w: status faults %q: want two uppercase hex digits", ErrFrame, parts[3])
	}
	s.Faults = int(f)
	return s, nil
}

// digits parses exactly n decimal digits.
func digits(s string, n int) (int, error) {
	if len(s) != n {
		return 0, errors.New("wrong length")
	}
	v := 0
	for i := 0; i < n; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a digit")
		}
		v = v*10 + int(s[i]-'0')
	}
	return v, nil
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
