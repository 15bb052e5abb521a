package wiegand

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"

	"github.com/luling-edge/luling/drivers"
)

// Format names a Wiegand frame layout.
type Format string

// Supported formats.
const (
	H10301 Format = "h10301" // 26 bits: P + FC8 + CN16 + P
	FC34   Format = "fc34"   // 34 bits: P + FC16 + CN16 + P
	H10304 Format = "h10304" // 37 bits: P + FC16 + CN19 + P
	Key4   Format = "key4"   // 4 bits: one keypad key
	Key8   Format = "key8"   // 8 bits: one key, high nibble its complement
)

// Errors that callers branch on; decode errors wrap one of them.
var (
	// ErrLength means a frame had a bit count no supported format has.
	ErrLength = errors.New("unsupported bit count")
	// ErrParity means a frame's parity (or keypad complement) check failed.
	ErrParity = errors.New("parity check failed")
)

// Card is a decoded frame: a card (Facility, Number) or a keypad key.
type Card struct {
	Format   Format
	Bits     int
	Facility uint32
	Number   uint32
	// Key is the key pressed for keypad formats: '0'..'9', '*' or '#'.
	Key byte
}

// IsKey tells whether the frame was a keypad key rather than a card.
func (c Card) IsKey() bool { return c.Format == Key4 || c.Format == Key8 }

// ID is the card's canonical identity, "facility:number" in decimal
// ("123:45678"), the form credentials are synced in. For a key it is the key.
func (c Card) ID() string {
	if c.IsKey() {
		return string(c.Key)
	}
	return strconv.FormatUint(uint64(c.Facility), 10) + ":" + strconv.FormatUint(uint64(c.Number), 10)
}

// parityOK reports whether the n bits of v starting at bit lo (counted
// from the least significant bit) have even (odd=false) or odd parity.
func parityOK(v uint64, lo, n int, odd bool) bool {
	ones := bits.OnesCount64((v >> lo) & (1<<n - 1))
	return (ones%2 == 1) == odd
}

// Decode decodes a frame of n bits; v holds them with the first bit on
// the wire as the most significant of the n. It checks the parity of card
// formats and the complement of 8-bit keys; an error names the bit count
// and the check that failed and wraps ErrLength or ErrParity.
func Decode(v uint64, n int) (Card, error) {
	if n < 1 || n > 64 {
		return Card{}, fmt.Errorf("wiegand: %d bits: want 4, 8, 26, 34 or 37: %w", n, ErrLength)
	}
	if n < 64 {
		v &= 1<<n - 1
	}
	switch n {
	case 26:
		if !parityOK(v, 13, 13, false) || !parityOK(v, 0, 13, true) {
			return Card{}, fmt.Errorf("wiegand: 26-bit frame %07x: leading even or trailing odd parity wrong: %w", v, ErrParity)
		}
		return Card{Format: H10301, Bits: n, Facility: uint32(v>>17) & 0xFF, Number: uint32(v>>1) & 0xFFFF}, nil
	case 34:
		if !parityOK(v, 17, 17, false) || !parityOK(v, 0, 17, true) {
			return Card{}, fmt.Errorf("wiegand: 34-bit frame %09x: leading even or trailing odd parity wrong: %w", v, ErrParity)
		}
		return Card{Format: FC34, Bits: n, Facility: uint32(v>>17) & 0xFFFF, Number: uint32(v>>1) & 0xFFFF}, nil
	case 37:
		if !parityOK(v, 18, 19, false) || !parityOK(v, 0, 19, true) {
			return Card{}, fmt.Errorf("wiegand: 37-bit frame %010x: leading even or trailing odd parity wrong: %w", v, ErrParity)
		}
		return Card{Format: H10304, Bits: n, Facility: uint32(v>>20) & 0xFFFF, Number: uint32(v>>1) & 0x7FFFF}, nil
	case 4:
		k, ok := keyChar(byte(v))
		if !ok {
			return Card{}, fmt.Errorf("wiegand: 4-bit key code %d: want 0..11 (digits, * and #): %w", v, ErrLength)
		}
		return Card{Format: Key4, Bits: n, Key: k}, nil
	case 8:
		lo, hi := byte(v)&0xF, byte(v>>4)&0xF
		if hi != ^lo&0xF {
			return Card{}, fmt.Errorf("wiegand: 8-bit key %02x: high nibble is not the complement of the low: %w", v, ErrParity)
		}
		k, ok := keyChar(lo)
		if !ok {
			return Card{}, fmt.Errorf("wiegand: 8-bit key code %d: want 0..11 (digits, * and #): %w", lo, ErrLength)
		}
		return Card{Format: Key8, Bits: n, Key: k}, nil
	}
	return Card{}, fmt.Errorf("wiegand: %d bits: want 4, 8, 26, 34 or 37: %w", n, ErrLength)
}

// DecodeBytes decodes n bits packed first bit first into the most
// significant bit of data[0], as OSDP RAW card replies carry them.
func DecodeBytes(data []byte, n int) (Card, error) {
	if n < 1 || n > 64 || len(data) != (n+7)/8 {
		return Card{}, fmt.Errorf("wiegand: %d bits in %d bytes: want 1..64 bits in (bits+7)/8 bytes: %w", n, len(data), ErrLength)
	}
	var v uint64
	for i := 0; i < n; i++ {
		bit := data[i/8] >> (7 - i%8) & 1
		v = v<<1 | uint64(bit)
	}
	return Decode(v, n)
}

func keyChar(c byte) (byte, bool) {
	switch {
	case c <= 9:
		return '0' + c, true
	case c == 10:
		return '*', true
	case c == 11:
		return '#', true
	}
	return 0, false
}

// Encode builds a frame of the given format with correct parity: the
// inverse of Decode, for simulators and tests. For keypad formats number
// is the key code (0..9, 10 for *, 11 for #) and facility is ignored.
func Encode(f Format, facility, number uint32) (v uint64, n int, err error) {
	field := func(x uint32, width int, what string) error {
		if x >= 1<<width {
			return fmt.Errorf("wiegand: %s %s %d does not fit %d bits", f, what, x, width)
		}
		return nil
	}
	setParity := func(v uint64, n, evenLo, evenN, oddN int) uint64 {
		// Leading bit: even parity over the upper evenN bits.
		if !parityOK(v, evenLo, evenN, false) {
			v |= 1 << (n - 1)
		}
		if !parityOK(v, 0, oddN, true) {
			v |= 1
		}
		return v
	}
	switch f {
	case H10301:
		if err = errors.Join(field(facility, 8, "facility"), field(number, 16, "card number")); err != nil {
			return 0, 0, err
		}
		v = uint64(facility)<<17 | uint64(number)<<1
		return setParity(v, 26, 13, 13, 13), 26, nil
	case FC34:
		if err = errors.Join(field(facility, 16, "facility"), field(number, 16, "card number")); err != nil {
			return 0, 0, err
		}
		v = uint64(facility)<<17 | uint64(number)<<1
		return setParity(v, 34, 17, 17, 17), 34, nil
	case H10304:
		if err = errors.Join(field(facility, 16, "facility"), field(number, 19, "card number")); err != nil {
			return 0, 0, err
		}
		v = uint64(facility)<<20 | uint64(number)<<1
		return setParity(v, 37, 18, 19, 19), 37, nil
	case Key4:
		if number > 11 {
			return 0, 0, fmt.Errorf("wiegand: key code %d: want 0..11", number)
		}
		return uint64(number), 4, nil
	case Key8:
		if number > 11 {
			return 0, 0, fmt.Errorf("wiegand: key code %d: want 0..11", number)
		}
		return uint64(^number&0xF)<<4 | uint64(number), 8, nil
	}
	return 0, 0, fmt.Errorf("wiegand: format %q: want h10301, fc34, h10304, key4 or key8", f)
}

// Bytes packs the n low bits of v first bit first into the most
// significant bit of the first byte: the layout DecodeBytes reads.
func Bytes(v uint64, n int) []byte {
	out := make([]byte, (n+7)/8)
	for i := 0; i < n; i++ {
		if v>>(n-1-i)&1 == 1 {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

// CardRead turns a card frame read at reader into the typed card-read
// event that the gateway hands to the reader's door, the same event an
// OSDP reader gives. Keypad keys are not card reads: ok is false.
func (c Card) CardRead(reader string, at time.Time) (r drivers.CardRead, ok bool) {
	if c.IsKey() {
		return r, false
	}
	v, n, err := Encode(c.Format, c.Facility, c.Number)
	if err != nil {
		return r, false
	}
	return drivers.CardRead{Reader: reader, Data: Bytes(v, n), Bits: n, Time: at}, true
}
