package modbus

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// hx parses "11 03 00 6B" into bytes.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestCRCVector(t *testing.T) {
	f := AppendCRC(hx(t, "01 03 00 00 00 0A"))
	if want := hx(t, "01 03 00 00 00 0A C5 CD"); !bytes.Equal(f, want) {
		t.Fatalf("frame % X, want % X", f, want)
	}
	req, err := ReadRequest(1, FuncReadHoldingRegisters, 0, 10)
	if err != nil || !bytes.Equal(req, f) {
		t.Fatalf("ReadRequest = % X, %v; want % X", req, err, f)
	}
}

// The table-driven CRC gives the catalogue's check value, and over frames
// of every length up to 256 bytes a frame followed by its CRC (low byte
// first) leaves a remainder of zero, which a wrong table breaks for some
// byte; every single-bit error in such a frame is caught.
func TestCRCTable(t *testing.T) {
	// "123456789" is the catalogue's check string for CRC-16/MODBUS.
	if got := CRC([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("CRC check value = %04X, want 4B37", got)
	}
	data := make([]byte, 256)
	for i := range data {
		data[i] = byte(i*151 + 7)
	}
	for n := 0; n <= len(data); n++ {
		f := AppendCRC(bytes.Clone(data[:n]))
		if r := CRC(f); r != 0 {
			t.Fatalf("%d bytes and their CRC: remainder %04X, want 0", n, r)
		}
		if n > 16 {
			continue
		}
		for bit := range 8 * len(f) {
			f[bit/8] ^= 1 << (bit % 8)
			if CheckCRC(f) {
				t.Fatalf("%d-byte frame with bit %d flipped passes its CRC", n, bit)
			}
			f[bit/8] ^= 1 << (bit % 8)
		}
	}
}

// Golden frames: the worked examples of the Modbus serial-line
// literature (unit 0x11), CRCs recomputed independently.
func TestGoldenRequests(t *testing.T) {
	build := func(f func() ([]byte, error)) []byte {
		b, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"01 read coils", build(func() ([]byte, error) { return ReadRequest(0x11, FuncReadCoils, 0x13, 0x25) }), "11 01 00 13 00 25 0E 84"},
		{"02 read discrete inputs", build(func() ([]byte, error) { return ReadRequest(0x11, FuncReadDiscreteInputs, 0xC4, 0x16) }), "11 02 00 C4 00 16 BA A9"},
		{"03 read holding registers", build(func() ([]byte, error) { return ReadRequest(0x11, FuncReadHoldingRegisters, 0x6B, 3) }), "11 03 00 6B 00 03 76 87"},
		{"04 read input registers", build(func() ([]byte, error) { return ReadRequest(0x11, FuncReadInputRegisters, 8, 1) }), "11 04 00 08 00 01 B2 98"},
		{"05 write single coil", build(func() ([]byte, error) { return WriteSingleCoilRequest(0x11, 0xAC, true) }), "11 05 00 AC FF 00 4E 8B"},
		{"06 write single register", build(func() ([]byte, error) { return WriteSingleRegisterRequest(0x11, 1, 3) }), "11 06 00 01 00 03 9A 9B"},
		{"15 write multiple coils", build(func() ([]byte, error) {
			return WriteMultipleCoilsRequest(0x11, 0x13, []bool{true, false, true, true, false, false, true, true, true, false})
		}), "11 0F 00 13 00 0A 02 CD 01 BF 0B"},
		{"16 write multiple registers", build(func() ([]byte, error) { return WriteMultipleRegistersRequest(0x11, 1, []uint16{0x000A, 0x0102}) }), "11 10 00 01 00 02 04 00 0A 01 02 C6 F0"},
		{"05 broadcast", build(func() ([]byte, error) { return WriteSingleCoilRequest(0, 1, true) }), "00 05 00 01 FF 00 DC 2B"},
	}
	for _, c := range cases {
		if want := hx(t, c.want); !bytes.Equal(c.got, want) {
			t.Errorf("%s: % X, want % X", c.name, c.got, want)
		}
	}
	off, _ := WriteSingleCoilRequest(1, 2, false)
	if off[4] != 0 || off[5] != 0 || !CheckCRC(off) {
		t.Errorf("coil off frame % X, want value 00 00 and a valid CRC", off)
	}
}

func TestGoldenReplies(t *testing.T) {
	cases := []struct {
		name, req, reply string
		regs             []uint16
		bits             []bool
	}{
		{name: "01", req: "11 01 00 13 00 25 0E 84", reply: "11 01 05 CD 6B B2 0E 1B 45 E6",
			bits: bitsOf("1011 0011 1101 0110 0100 1101 0111 0000 1101 1")},
		{name: "02", req: "11 02 00 C4 00 16 BA A9", reply: "11 02 03 AC DB 35 20 18",
			bits: bitsOf("0011 0101 1101 1011 1010 11")},
		{name: "03", req: "11 03 00 6B 00 03 76 87", reply: "11 03 06 AE 41 56 52 43 40 49 AD", regs: []uint16{0xAE41, 0x5652, 0x4340}},
		{name: "04", req: "11 04 00 08 00 01 B2 98", reply: "11 04 02 00 0A F8 F4", regs: []uint16{10}},
		{name: "05", req: "11 05 00 AC FF 00 4E 8B", reply: "11 05 00 AC FF 00 4E 8B"},
		{name: "06", req: "11 06 00 01 00 03 9A 9B", reply: "11 06 00 01 00 03 9A 9B"},
		{name: "15", req: "11 0F 00 13 00 0A 02 CD 01 BF 0B", reply: "11 0F 00 13 00 0A 26 99"},
		{name: "16", req: "11 10 00 01 00 02 04 00 0A 01 02 C6 F0", reply: "11 10 00 01 00 02 12 98"},
	}
	for _, c := range cases {
		req, reply := hx(t, c.req), hx(t, c.reply)
		// The arbiter's view: the length is known from the prefix.
		fl := ReplyLen(req[1])
		for i := 0; i < len(reply); i++ {
			n, err := fl(reply[:i])
			if err != nil {
				t.Fatalf("%s: ReplyLen(% X): %v", c.name, reply[:i], err)
			}
			if n != 0 && n != len(reply) {
				t.Fatalf("%s: ReplyLen(% X) = %d, want %d", c.name, reply[:i], n, len(reply))
			}
			if i >= 3 && n == 0 {
				t.Fatalf("%s: ReplyLen(% X) = 0 after three bytes", c.name, reply[:i])
			}
		}
		data, err := CheckReply(req, reply)
		if err != nil {
			t.Fatalf("%s: CheckReply: %v", c.name, err)
		}
		switch {
		case c.regs != nil:
			got := DecodeRegisters(nil, data)
			if !equalSlices(got, c.regs) {
				t.Errorf("%s: registers %04X, want %04X", c.name, got, c.regs)
			}
		case c.bits != nil:
			got := DecodeBits(nil, data, len(c.bits))
			if !equalSlices(got, c.bits) {
				t.Errorf("%s: bits %v, want %v", c.name, got, c.bits)
			}
		default:
			if data != nil {
				t.Errorf("%s: write reply data % X, want none", c.name, data)
			}
		}
	}
}

func bitsOf(s string) []bool {
	var out []bool
	for _, c := range s {
		switch c {
		case '0':
			out = append(out, false)
		case '1':
			out = append(out, true)
		}
	}
	return out
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExceptionReplies(t *testing.T) {
	req := hx(t, "11 03 00 6B 00 03 76 87")
	sentinels := map[byte]error{
		1: ErrIllegalFunction, 2: ErrIllegalDataAddress, 3: ErrIllegalDataValue, 4: ErrDeviceFailure,
		5: ErrAcknowledge, 6: ErrDeviceBusy, 7: ErrNegativeAcknowledge, 8: ErrMemoryParity,
		0x0A: ErrGatewayPathUnavailable, 0x0B: ErrGatewayTargetFailed,
	}
	for code, sentinel := range sentinels {
		reply := AppendCRC([]byte{0x11, 0x83, code})
		if n, err := ReplyLen(FuncReadHoldingRegisters)(reply[:2]); n != 5 || err != nil {
			t.Fatalf("ReplyLen of exception prefix = %d, %v; want 5", n, err)
		}
		_, err := CheckReply(req, reply)
		var ex *ExceptionError
		if !errors.As(err, &ex) || ex.Function != FuncReadHoldingRegisters || ex.Code != code {
			t.Fatalf("code %d: err %v, want *ExceptionError{3, %d}", code, err, code)
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("code %d: errors.Is(%v, %v) = false", code, err, sentinel)
		}
		for other, s := range sentinels {
			if other != code && errors.Is(err, s) {
				t.Errorf("code %d also matches %v", code, s)
			}
		}
	}
	// The documented example frame.
	_, err := CheckReply(req, hx(t, "11 83 02 C1 34"))
	if err == nil || err.Error() != "device exception 0x02 (illegal data address)" {
		t.Errorf("err = %v", err)
	}
	_, err = CheckReply(req, AppendCRC([]byte{0x11, 0x83, 0x09}))
	if err == nil || err.Error() != "device exception 0x09 (undefined code)" || errors.Unwrap(err) != nil {
		t.Errorf("undefined code: err = %v", err)
	}
}

func TestBadReplies(t *testing.T) {
	req := hx(t, "11 03 00 6B 00 03 76 87")
	good := hx(t, "11 03 06 AE 41 56 52 43 40 49 AD")
	corrupt := bytes.Clone(good)
	corrupt[4] ^= 0x01
	cases := []struct {
		name   string
		reply  []byte
		target error
		msg    string
	}{
		{"flipped data bit", corrupt, ErrCRC, "crc mismatch"},
		{"flipped crc", append(bytes.Clone(good[:len(good)-1]), 0xAE), ErrCRC, "crc mismatch"},
		{"other unit", AppendCRC([]byte{0x12, 0x03, 0x06, 0xAE, 0x41, 0x56, 0x52, 0x43, 0x40}), ErrBadReply,
			"reply comes from unit 18, want unit 17: bad reply"},
		{"other function", AppendCRC([]byte{0x11, 0x04, 0x06, 0xAE, 0x41, 0x56, 0x52, 0x43, 0x40}), ErrBadReply,
			"reply has function code 0x04, want 0x03: bad reply"},
		{"short byte count", AppendCRC([]byte{0x11, 0x03, 0x04, 0xAE, 0x41, 0x56, 0x52}), ErrBadReply,
			"reply byte count is 4, want 6 for 3 items: bad reply"},
		{"length disagrees with byte count", AppendCRC([]byte{0x11, 0x03, 0x06, 0xAE, 0x41, 0x56, 0x52}), ErrBadReply,
			"reply is 9 bytes, want 11: bad reply"},
		{"too short", hx(t, "11 03 00"), ErrBadReply, "reply is 3 bytes, want at least 5: bad reply"},
		{"long exception", AppendCRC([]byte{0x11, 0x83, 0x02, 0x00}), ErrBadReply, "exception reply is 6 bytes, want 5: bad reply"},
	}
	for _, c := range cases {
		_, err := CheckReply(req, c.reply)
		if !errors.Is(err, c.target) || err.Error() != c.msg {
			t.Errorf("%s: err %q, want %q (%v)", c.name, err, c.msg, c.target)
		}
	}
	// Write echoes.
	wreq := hx(t, "11 06 00 01 00 03 9A 9B")
	_, err := CheckReply(wreq, AppendCRC(hx(t, "11 06 00 01 00 04")))
	if !errors.Is(err, ErrBadReply) || err.Error() != "reply echoes 00 01 00 04, want 00 01 00 03: bad reply" {
		t.Errorf("echo mismatch: %v", err)
	}
	mreq := hx(t, "11 10 00 01 00 02 04 00 0A 01 02 C6 F0")
	if _, err := CheckReply(mreq, AppendCRC(hx(t, "11 10 00 01 00 01"))); !errors.Is(err, ErrBadReply) {
		t.Errorf("quantity echo mismatch: %v", err)
	}
	if _, err := CheckReply(mreq, AppendCRC(hx(t, "11 10 00 01 00 02 00"))); !errors.Is(err, ErrBadReply) {
		t.Errorf("long write reply: %v", err)
	}
	// Coils: byte count follows the bit quantity.
	creq, _ := ReadRequest(1, FuncReadCoils, 0, 9)
	if _, err := CheckReply(creq, AppendCRC([]byte{1, 1, 1, 0xFF})); !errors.Is(err, ErrBadReply) {
		t.Errorf("9 coils in 1 byte: %v", err)
	}
	if _, err := CheckReply(creq, AppendCRC([]byte{1, 1, 2, 0xFF, 0x01})); err != nil {
		t.Errorf("9 coils in 2 bytes: %v", err)
	}
}

func TestReplyLenErrors(t *testing.T) {
	cases := []struct {
		fc     byte
		prefix string
		msg    string
	}{
		{FuncReadHoldingRegisters, "11 04", "reply has function code 0x04, want 0x03 or exception 0x83: bad reply"},
		{FuncReadHoldingRegisters, "11 84", "reply has function code 0x84, want 0x03 or exception 0x83: bad reply"},
		{FuncReadHoldingRegisters, "11 03 00", "read holding registers reply has byte count 0, want 1..250: bad reply"},
		{FuncReadInputRegisters, "11 04 FF", "read input registers reply has byte count 255, want 1..250: bad reply"},
		{FuncReadInputRegisters, "11 04 05", "read input registers reply has odd byte count 5: bad reply"},
		{FuncWriteSingleRegister, "11 10", "reply has function code 0x10, want 0x06 or exception 0x86: bad reply"},
		{0x2B, "11 2B", "function code 0x2B is not supported: bad reply"},
	}
	for _, c := range cases {
		n, err := ReplyLen(c.fc)(hx(t, c.prefix))
		if n != 0 || !errors.Is(err, ErrBadReply) || err.Error() != c.msg {
			t.Errorf("ReplyLen(%02X)(%s) = %d, %v; want %q", c.fc, c.prefix, n, err, c.msg)
		}
	}
	// Odd byte counts are fine for coils, and lengths need the third byte.
	if n, err := ReplyLen(FuncReadCoils)(hx(t, "11 01 05")); n != 10 || err != nil {
		t.Errorf("coils: %d, %v", n, err)
	}
	if n, err := ReplyLen(FuncReadCoils)(hx(t, "11 01")); n != 0 || err != nil {
		t.Errorf("coils, two bytes: %d, %v", n, err)
	}
	if n, err := ReplyLen(FuncWriteMultipleCoils)(hx(t, "11 0F")); n != 8 || err != nil {
		t.Errorf("write: %d, %v", n, err)
	}
}

func TestRequestLimits(t *testing.T) {
	cases := []struct {
		name string
		err  error
		msg  string
	}{
		{"125 registers", second(ReadRequest(1, FuncReadHoldingRegisters, 0, 125)), ""},
		{"126 registers", second(ReadRequest(1, FuncReadHoldingRegisters, 0, 126)), "quantity 126 is out of range, want 1..125: invalid request"},
		{"0 registers", second(ReadRequest(1, FuncReadInputRegisters, 0, 0)), "quantity 0 is out of range, want 1..125: invalid request"},
		{"2000 coils", second(ReadRequest(1, FuncReadCoils, 0, 2000)), ""},
		{"2001 inputs", second(ReadRequest(1, FuncReadDiscreteInputs, 0, 2001)), "quantity 2001 is out of range, want 1..2000: invalid request"},
		{"past 65535", second(ReadRequest(1, FuncReadHoldingRegisters, 65530, 10)), "addresses 65530..65539 run past 65535: invalid request"},
		{"last register", second(ReadRequest(1, FuncReadHoldingRegisters, 65535, 1)), ""},
		{"broadcast read", second(ReadRequest(0, FuncReadHoldingRegisters, 0, 1)), "reads cannot be broadcast (unit 0): invalid request"},
		{"unit 248", second(WriteSingleRegisterRequest(248, 0, 1)), "unit 248 is out of range, want 1..247: invalid request"},
		{"not a read", second(ReadRequest(1, FuncWriteSingleCoil, 0, 1)), "function 0x05 is not a read: invalid request"},
		{"123 registers", second(WriteMultipleRegistersRequest(1, 0, make([]uint16, 123))), ""},
		{"124 registers", second(WriteMultipleRegistersRequest(1, 0, make([]uint16, 124))), "quantity 124 is out of range, want 1..123: invalid request"},
		{"no registers", second(WriteMultipleRegistersRequest(1, 0, nil)), "quantity 0 is out of range, want 1..123: invalid request"},
		{"1968 coils", second(WriteMultipleCoilsRequest(1, 0, make([]bool, 1968))), ""},
		{"1969 coils", second(WriteMultipleCoilsRequest(1, 0, make([]bool, 1969))), "quantity 1969 is out of range, want 1..1968: invalid request"},
	}
	for _, c := range cases {
		if c.msg == "" {
			if c.err != nil {
				t.Errorf("%s: %v", c.name, c.err)
			}
			continue
		}
		if !errors.Is(c.err, ErrInvalidRequest) || c.err.Error() != c.msg {
			t.Errorf("%s: %v, want %q", c.name, c.err, c.msg)
		}
	}
	f, _ := WriteMultipleCoilsRequest(1, 0, make([]bool, 1968))
	if len(f) != 7+246+2 || f[6] != 246 {
		t.Errorf("1968 coils: frame of %d bytes, byte count %d", len(f), f[6])
	}
}

func second[T any](_ T, err error) error { return err }
