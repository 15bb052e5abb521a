package wiegand

import (
	"errors"
	"testing"
	"time"
)

func TestDecodeKnownFrames(t *testing.T) {
	tests := []struct {
		name string
		v    uint64
		n    int
		want Card
	}{
		// 1 00000001 0000000000000001 0: FC 1 has one 1 (leading parity 1),
		// the trailing 12 bits have one 1 (odd already, trailing parity 0).
		{"h10301 fc1 cn1", 0x2020002, 26, Card{Format: H10301, Bits: 26, Facility: 1, Number: 1}},
		// 0 00000000 0000000000000000 1: all zero data, odd parity forces 1.
		{"h10301 zero", 0x1, 26, Card{Format: H10301, Bits: 26}},
		{"key4 #", 11, 4, Card{Format: Key4, Bits: 4, Key: '#'}},
		{"key8 5", 0xA5, 8, Card{Format: Key8, Bits: 8, Key: '5'}},
		{"key8 *", 0x5A, 8, Card{Format: Key8, Bits: 8, Key: '*'}},
	}
	for _, tt := range tests {
		got, err := Decode(tt.v, tt.n)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		f      Format
		fc, cn uint32
		id     string
	}{
		{H10301, 123, 45678, "123:45678"},
		{H10301, 255, 65535, "255:65535"},
		{FC34, 4660, 65000, "4660:65000"},
		{H10304, 65535, 524287, "65535:524287"},
		{H10304, 1, 300000, "1:300000"},
	}
	for _, tt := range tests {
		v, n, err := Encode(tt.f, tt.fc, tt.cn)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Decode(v, n)
		if err != nil {
			t.Fatalf("%s %d:%d: %v", tt.f, tt.fc, tt.cn, err)
		}
		if c.Format != tt.f || c.ID() != tt.id {
			t.Errorf("%s: decoded %+v (id %s), want id %s", tt.f, c, c.ID(), tt.id)
		}
		// Every single-bit error must be caught: parity covers every bit.
		for i := 0; i < n; i++ {
			if c2, err := Decode(v^1<<i, n); err == nil {
				t.Errorf("%s %s: bit %d flipped decoded as %s", tt.f, tt.id, i, c2.ID())
			} else if !errors.Is(err, ErrParity) {
				t.Errorf("%s bit %d flipped: error %v does not wrap ErrParity", tt.f, i, err)
			}
		}
	}
	if _, _, err := Encode(H10301, 256, 1); err == nil {
		t.Error("facility 256 in 26 bits was accepted")
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		v    uint64
		n    int
		want error
	}{
		{0, 25, ErrLength},
		{0, 0, ErrLength},
		{0, 65, ErrLength},
		{12, 4, ErrLength},   // no key 12
		{0xA6, 8, ErrParity}, // high nibble not the complement
		{0x2020003, 26, ErrParity},
	}
	for _, tt := range tests {
		_, err := Decode(tt.v, tt.n)
		if !errors.Is(err, tt.want) {
			t.Errorf("Decode(%x, %d) = %v, want %v", tt.v, tt.n, err, tt.want)
		}
	}
}

func TestDecodeBytes(t *testing.T) {
	v, n, _ := Encode(H10301, 7, 1234)
	// Pack 26 bits first bit first into 4 bytes.
	data := make([]byte, 4)
	for i := 0; i < n; i++ {
		if v>>(n-1-i)&1 == 1 {
			data[i/8] |= 0x80 >> (i % 8)
		}
	}
	c, err := DecodeBytes(data, n)
	if err != nil || c.ID() != "7:1234" {
		t.Fatalf("DecodeBytes = %+v, %v; want 7:1234", c, err)
	}
	if _, err := DecodeBytes(data[:3], n); !errors.Is(err, ErrLength) {
		t.Errorf("short data: %v, want ErrLength", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(uint64(0x2020002), 26)
	f.Add(uint64(0xA5), 8)
	f.Add(uint64(11), 4)
	f.Add(uint64(1<<36|12345), 37)
	f.Add(uint64(0), 34)
	f.Add(uint64(1<<63), 64)
	f.Fuzz(func(t *testing.T, v uint64, n int) {
		c, err := Decode(v, n)
		if err != nil {
			if !errors.Is(err, ErrLength) && !errors.Is(err, ErrParity) {
				t.Fatalf("Decode(%x, %d): error %v wraps neither sentinel", v, n, err)
			}
			return
		}
		if c.Bits != n {
			t.Fatalf("Decode(%x, %d): Bits %d", v, n, c.Bits)
		}
		// A decoded card must re-encode to the same frame.
		code := c.Number
		if c.IsKey() {
			switch c.Key {
			case '*':
				code = 10
			case '#':
				code = 11
			default:
				code = uint32(c.Key - '0')
			}
		}
		v2, n2, err := Encode(c.Format, c.Facility, code)
		if err != nil || n2 != n || v2 != v&(1<<n-1) {
			t.Fatalf("Decode(%x, %d) = %+v re-encodes to %x/%d (%v)", v, n, c, v2, n2, err)
		}
	})
}

// TestCardRead: a Wiegand card becomes the typed card read an OSDP reader
// gives, whose bits decode back to the same card; keys are not card reads.
func TestCardRead(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, c := range []struct {
		f        Format
		fac, num uint32
	}{{H10301, 123, 45678}, {FC34, 65535, 1}, {H10304, 4000, 524287}} {
		v, n, err := Encode(c.f, c.fac, c.num)
		if err != nil {
			t.Fatal(err)
		}
		card, err := Decode(v, n)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := card.CardRead("lobby-wiegand", at)
		if !ok || r.Reader != "lobby-wiegand" || r.Bits != n || !r.Time.Equal(at) || len(r.Data) != (n+7)/8 {
			t.Fatalf("%s: CardRead = %+v, %v", c.f, r, ok)
		}
		back, err := DecodeBytes(r.Data, r.Bits)
		if err != nil || back != card {
			t.Errorf("%s: bytes %x decode to %+v, %v; want %+v", c.f, r.Data, back, err, card)
		}
	}
	if got := Bytes(0b1011, 4); len(got) != 1 || got[0] != 0b1011_0000 {
		t.Errorf("Bytes(1011, 4) = %08b", got)
	}
	key, _ := Decode(5, 4)
	if _, ok := key.CardRead("r", at); ok {
		t.Error("a keypad key became a card read")
	}
}
