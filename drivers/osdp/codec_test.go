package osdp

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Annex E vectors of the OSDP specification.
func TestCRCAndChecksumVectors(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want uint16
	}{
		{"53 00 09 00 04 61 00", 0x66C0},
		{"53 7F 0D 00 04 6E 00 80 25 00 00", 0x386E},
	} {
		if got := CRC16(unhex(t, c.msg)); got != c.want {
			t.Errorf("crc(%s) = %#04x, want %#04x", c.msg, got, c.want)
		}
	}
	for _, c := range []struct {
		msg  string
		want byte
	}{
		{"53 00 08 00 00 61 00", 0x44},
		{"53 7F 0C 00 00 6E 00 80 25 00 00", 0x0F},
	} {
		if got := Checksum(unhex(t, c.msg)); got != c.want {
			t.Errorf("checksum(%s) = %#02x, want %#02x", c.msg, got, c.want)
		}
	}
}

func TestGoldenFrames(t *testing.T) {
	cases := []struct {
		name string
		f    Frame
		wire string
	}{
		{"id crc", Frame{Addr: 0, CRC: true, Code: CmdID, Data: IDData()}, "53 00 09 00 04 61 00 C0 66"},
		{"comset broadcast crc", Frame{Addr: Broadcast, CRC: true, Code: CmdComSet, Data: ComSetData(ComSet{Addr: 0, Baud: 9600})},
			"53 7F 0D 00 04 6E 00 80 25 00 00 6E 38"},
		{"id checksum", Frame{Addr: 0, Code: CmdID, Data: IDData()}, "53 00 08 00 00 61 00 44"},
		{"id with mark", Frame{Mark: true, Addr: 0, CRC: true, Code: CmdID, Data: IDData()}, "FF 53 00 09 00 04 61 00 C0 66"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.wire)
			got, err := c.f.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode = % X, want % X", got, want)
			}
			n, err := FrameLen(want[:4+btoi(c.f.Mark)])
			if err != nil || n != len(want) {
				t.Fatalf("FrameLen = %d, %v; want %d", n, err, len(want))
			}
			f, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if f.Addr != c.f.Addr || f.Code != c.f.Code || f.CRC != c.f.CRC || f.Mark != c.f.Mark || !bytes.Equal(f.Data, c.f.Data) || f.Reply {
				t.Fatalf("decode = %+v, want %+v", f, c.f)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestReplyFrameRoundTrip(t *testing.T) {
	f := Frame{Addr: 5, Reply: true, Seq: 3, CRC: true, SCBType: SCS18, Code: ReplyRaw, Data: []byte{1, 2, 3}, MAC: []byte{9, 8, 7, 6}}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// addr with reply bit, ctrl = seq 3 | crc | scb
	if b[1] != 0x85 || b[4] != 0x0F || b[5] != 2 || b[6] != SCS18 {
		t.Fatalf("header % X", b[:7])
	}
	g, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Reply || g.Addr != 5 || g.Seq != 3 || g.SCBType != SCS18 || len(g.SCBData) != 0 || !bytes.Equal(g.MAC, f.MAC) || !bytes.Equal(g.Data, f.Data) {
		t.Fatalf("round trip %+v", g)
	}
	if _, err := (&Frame{SCBType: SCS15, Code: CmdPoll, CRC: true}).Encode(); err == nil {
		t.Fatal("a 0x15 frame without a mac encoded")
	}
}

func TestDecodeErrors(t *testing.T) {
	good := unhex(t, "53 00 09 00 04 61 00 C0 66")
	mut := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	cases := []struct {
		name  string
		b     []byte
		field string
		check bool
	}{
		{"short", good[:5], "len", false},
		{"som", mut(0, 0x54), "som", false},
		{"len", mut(2, 0x0A), "len", false},
		{"crc", mut(7, 0xC1), "crc", true},
		{"data flipped", mut(6, 0x01), "crc", true},
		{"checksum", unhex(t, "53 00 08 00 00 61 00 45"), "checksum", true},
	}
	// An SCB whose length runs past the code byte.
	bad := []byte{0x53, 0x00, 0x0B, 0x00, 0x0C, 0x09, 0x11, 0x00, 0x61}
	bad = append(bad, byte(CRC16(bad)), byte(CRC16(bad)>>8))
	cases = append(cases, struct {
		name  string
		b     []byte
		field string
		check bool
	}{"scb length", bad, "scb", false})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.b)
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("err = %v, want a FrameError on %s", err, c.field)
			}
			if errors.Is(err, ErrCheck) != c.check || errors.Is(err, ErrFrame) == c.check {
				t.Fatalf("err = %v: ErrCheck %v, want %v", err, errors.Is(err, ErrCheck), c.check)
			}
		})
	}
}

func TestFrameLen(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 0, false}, {"FF", 0, false}, {"53 00", 0, false}, {"53 80 0E", 0, false},
		{"53 80 0E 00", 14, false}, {"FF 53 80 0E 00", 15, false},
		{"54", 0, true}, {"FF 54", 0, true}, {"53 80 03 00", 0, true}, {"53 80 FF FF", 0, true},
	} {
		n, err := FrameLen(unhex(t, c.in))
		if n != c.want || (err != nil) != c.err {
			t.Errorf("FrameLen(%s) = %d, %v; want %d, err %v", c.in, n, err, c.want, c.err)
		}
	}
}

// Secure channel vectors of Annex E (SCBK-D, RND.A = B0..B7, RND.B = A0..A7).
func TestSecureChannelVectors(t *testing.T) {
	rndA := [8]byte{0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7}
	rndB := [8]byte{0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7}
	s := NewSession(SCBKD(), rndA, rndB)
	for _, c := range []struct {
		name string
		got  [16]byte
		want string
	}{
		{"s-enc", s.SEnc, "bf8dc2a8329acb8c67c6d0cd9a451682"},
		{"s-mac1", s.SMAC1, "5e86c676603bdee2d8beafe178637332"},
		{"s-mac2", s.SMAC2, "6fda86e857777e8113203575823917 2e"},
		{"cp cryptogram", s.CPCryptogram(), "26d3356e07762d262801fc8e6665a891"},
		{"pd cryptogram", s.PDCryptogram(), "fde5d2f428ec163124 71ea3c02bd7796"},
		{"rmac_i", s.InitialRMAC(), "b2a30057eb98ba2229ec1f875662b524"},
	} {
		if want := unhex(t, c.want); !bytes.Equal(c.got[:], want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, want)
		}
	}
	if err := s.VerifyPDCryptogram([16]byte(unhex(t, "fde5d2f428ec16312471ea3c02bd7796"))); err != nil {
		t.Error(err)
	}
	if err := s.VerifyCPCryptogram([16]byte(unhex(t, "fde5d2f428ec16312471ea3c02bd7796"))); !errors.Is(err, ErrCryptogram) {
		t.Errorf("the pd cryptogram passed as the cp's: %v", err)
	}
}

// refMAC is the MAC computed block by block with plain AES, as the
// standard describes it, to check Session.MAC independently.
func refMAC(t *testing.T, mac1, mac2, iv [16]byte, msg []byte) [16]byte {
	m := bytes.Clone(msg)
	if len(m)%16 != 0 {
		m = append(m, 0x80)
		for len(m)%16 != 0 {
			m = append(m, 0)
		}
	}
	c1, _ := aes.NewCipher(mac1[:])
	c2, _ := aes.NewCipher(mac2[:])
	x := iv
	for i := 0; i < len(m); i += 16 {
		for j := range 16 {
			x[j] ^= m[i+j]
		}
		if i+16 < len(m) {
			c1.Encrypt(x[:], x[:])
		} else {
			c2.Encrypt(x[:], x[:])
		}
	}
	return x
}

func pair(_ testing.TB) (cp, pd *Session) {
	rndA := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	rndB := [8]byte{9, 10, 11, 12, 13, 14, 15, 16}
	key := [16]byte{0: 0xAA, 15: 0x55}
	cp, pd = NewSession(key, rndA, rndB), NewSession(key, rndA, rndB)
	cp.Start()
	pd.Start()
	return cp, pd
}

func TestSealOpenChain(t *testing.T) {
	cp, pd := pair(t)
	for i, data := range [][]byte{nil, {1}, bytes.Repeat([]byte{7}, 15), bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{3}, 40)} {
		ivCmd := cp.RMAC
		cmd := Frame{Mark: true, Addr: 3, Seq: byte(i%3 + 1), CRC: true, Code: CmdOut, Data: data}
		raw, err := cp.Seal(cmd, true)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		wantSCB := byte(SCS17)
		if len(data) == 0 {
			wantSCB = SCS15
		}
		if f.SCBType != wantSCB {
			t.Fatalf("message %d: scb %#02x, want %#02x", i, f.SCBType, wantSCB)
		}
		if len(data) > 0 && (len(f.Data)%16 != 0 || bytes.Contains(f.Data, data)) {
			t.Fatalf("message %d: data not encrypted: % x", i, f.Data)
		}
		ref := refMAC(t, cp.SMAC1, cp.SMAC2, ivCmd, raw[1:len(raw)-6])
		if !bytes.Equal(ref[:4], f.MAC) {
			t.Fatalf("message %d: mac % x, reference % x", i, f.MAC, ref[:4])
		}
		got, err := pd.Open(raw, &f, true)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, data) && len(got)+len(data) != 0 {
			t.Fatalf("message %d: data % x, want % x", i, got, data)
		}
		// Reply chained on the command's MAC.
		rraw, err := pd.Seal(Frame{Addr: 3, Reply: true, Seq: f.Seq, CRC: false, Code: ReplyRaw, Data: []byte{0, 1, 26, 0, 1, 2, 3, 4}}, false)
		if err != nil {
			t.Fatal(err)
		}
		rf, err := Decode(rraw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Open(rraw, &rf, false); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	// A flipped bit in a sealed frame (CRC made good again) fails the MAC.
	raw, _ := cp.Seal(Frame{Addr: 3, Seq: 1, CRC: true, Code: CmdLED, Data: make([]byte, 14)}, true)
	raw[7] ^= 1
	crc := CRC16(raw[:len(raw)-2])
	raw[len(raw)-2], raw[len(raw)-1] = byte(crc), byte(crc>>8)
	f, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pd.Open(raw, &f, true); !errors.Is(err, ErrMAC) {
		t.Fatalf("tampered frame: %v, want ErrMAC", err)
	}
	// A command replayed after its reply fails: the chain moved on.
	cp2, pd2 := pair(t)
	raw, _ = cp2.Seal(Frame{Addr: 3, Seq: 1, CRC: true, Code: CmdPoll}, true)
	f, _ = Decode(raw)
	if _, err := pd2.Open(raw, &f, true); err != nil {
		t.Fatal(err)
	}
	if _, err := pd2.Seal(Frame{Addr: 3, Reply: true, Seq: 1, CRC: true, Code: ReplyACK}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := pd2.Open(raw, &f, true); !errors.Is(err, ErrMAC) {
		t.Fatalf("replayed frame: %v, want ErrMAC", err)
	}
}

func TestPayloads(t *testing.T) {
	id, err := ParsePDID(unhex(t, "5C 26 23 19 02 A1 B2 C3 D4 03 01 07"))
	if err != nil {
		t.Fatal(err)
	}
	if id.Vendor() != 0x23265C || id.Model != 0x19 || id.Version != 2 || id.Serial != 0xD4C3B2A1 || id.FirmwareString() != "3.1.7" {
		t.Fatalf("pdid %+v", id)
	}
	if !bytes.Equal(id.Bytes(), unhex(t, "5C 26 23 19 02 A1 B2 C3 D4 03 01 07")) {
		t.Fatal("pdid bytes differ")
	}
	caps, err := ParsePDCAP(unhex(t, "01 01 04 08 01 00 09 01 00 04 01 01"))
	if err != nil || caps[CapContactStatus].Count != 4 || !caps.CRC() || !caps.SecureChannel() || caps[CapLED].Count != 1 {
		t.Fatalf("pdcap %v %v", caps, err)
	}
	card, err := ParseRaw(unhex(t, "00 01 1A 00 80 80 00 80"))
	if err != nil || card.Bits != 26 || card.Format != 1 || card.Hex() != "80800080" {
		t.Fatalf("raw %+v %v", card, err)
	}
	kp, err := ParseKeypad(unhex(t, "00 05 31 32 33 34 23"))
	if err != nil || kp.Keys != "1234#" {
		t.Fatalf("keypad %+v %v", kp, err)
	}
	ls, err := ParseLStatR([]byte{1, 0})
	if err != nil || !ls.Tamper || ls.Power {
		t.Fatalf("lstatr %+v %v", ls, err)
	}
	cs, err := ParseComSet(unhex(t, "05 00 C2 01 00"))
	if err != nil || cs.Addr != 5 || cs.Baud != 115200 {
		t.Fatalf("com %+v %v", cs, err)
	}
	outs, err := ParseOut(OutData(Output{Number: 0, Control: OutTempOn, Timer: 50}))
	if err != nil || len(outs) != 1 || outs[0].Timer != 50 || outs[0].Control != OutTempOn {
		t.Fatalf("out %+v %v", outs, err)
	}
	if got := OutData(Output{Number: 1, Control: OutTempOn, Timer: 0x0132}); !bytes.Equal(got, unhex(t, "01 05 32 01")) {
		t.Fatalf("out data % x", got)
	}
	led := LED{Reader: 0, Number: 1, TempControl: 2, TempOn: 3, TempOff: 4, TempOnColor: ColorGreen, TempOffColor: ColorBlack, TempTimer: 0x0102, PermControl: 1, PermOn: 5, PermOff: 6, PermOnColor: ColorRed, PermOffColor: ColorAmber}
	if got := LEDData(led); !bytes.Equal(got, unhex(t, "00 01 02 03 04 02 00 02 01 01 05 06 01 03")) {
		t.Fatalf("led data % x", got)
	}
	if l, err := ParseLED(LEDData(led, led)); err != nil || len(l) != 2 || l[1] != led {
		t.Fatalf("led %+v %v", l, err)
	}
	for name, fn := range map[string]func() error{
		"pdid short":    func() error { _, err := ParsePDID(make([]byte, 11)); return err },
		"pdcap ragged":  func() error { _, err := ParsePDCAP(make([]byte, 4)); return err },
		"raw too few":   func() error { _, err := ParseRaw(unhex(t, "00 01 1A 00 80 80 00")); return err },
		"raw zero bits": func() error { _, err := ParseRaw(unhex(t, "00 01 00 00")); return err },
		"keypad count":  func() error { _, err := ParseKeypad(unhex(t, "00 03 31")); return err },
		"lstatr value":  func() error { _, err := ParseLStatR([]byte{2, 0}); return err },
		"out control":   func() error { _, err := ParseOut([]byte{0, 7, 0, 0}); return err },
		"ccrypt short":  func() error { _, err := ParseCCrypt(make([]byte, 31)); return err },
		"rmac_i short":  func() error { _, err := ParseRMACI(make([]byte, 15)); return err },
		"keyset type":   func() error { _, err := ParseKeySet(append([]byte{2, 16}, make([]byte, 16)...)); return err },
		"busy data":     func() error { return ParseBusy([]byte{1}) },
		"text length":   func() error { _, err := ParseText([]byte{0, 1, 0, 0, 0, 5, 'a'}); return err },
		"com address":   func() error { _, err := ParseComSet([]byte{127, 0, 0, 0, 0}); return err },
		"fmt length":    func() error { _, err := ParseFmt([]byte{0, 0, 2, 'x'}); return err },
		"nak empty":     func() error { _, err := ParseNAK(nil, CmdPoll); return err },
		"istatr empty":  func() error { _, err := ParseStates("istatr", nil); return err },
		"buz short":     func() error { _, err := ParseBuz([]byte{0}); return err },
	} {
		if err := fn(); !errors.Is(err, ErrPayload) {
			t.Errorf("%s: err %v, want ErrPayload", name, err)
		}
	}
	nak, _ := ParseNAK([]byte{NakSequence}, CmdPoll)
	if !errors.Is(nak, ErrNAK) || nak.Code != NakSequence {
		t.Fatalf("nak %v", nak)
	}
}

func TestDeriveSCBK(t *testing.T) {
	mk := [16]byte{0: 1}
	cuid := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	c, _ := aes.NewCipher(mk[:])
	var want [16]byte
	c.Encrypt(want[:], unhex(t, "0102030405060708 FEFDFCFBFAF9F8F7"))
	if got := DeriveSCBK(mk, cuid); got != want {
		t.Fatalf("scbk %x, want %x", got, want)
	}
}
