package osdp

import (
	"bytes"
	"errors"
	"testing"
)

func seedFrames(f *testing.F) {
	for _, s := range []string{
		"53 00 09 00 04 61 00 C0 66",
		"53 7F 0D 00 04 6E 00 80 25 00 00 6E 38",
		"53 00 08 00 00 61 00 44",
		"FF 53 00 09 00 04 61 00 C0 66",
	} {
		f.Add(unhex(f, s))
	}
	cp, _ := pair(nil)
	for _, fr := range []Frame{
		{Mark: true, Addr: 3, Seq: 1, CRC: true, Code: CmdOut, Data: OutData(Output{0, OutTempOn, 50})},
		{Addr: 3, Seq: 2, CRC: false, Code: CmdPoll},
	} {
		b, _ := cp.Seal(fr, true)
		f.Add(b)
	}
	hs := Frame{Addr: 1, Reply: true, Seq: 1, CRC: true, SCBType: SCS12, SCBData: []byte{0}, Code: ReplyCCrypt, Data: make([]byte, 32)}
	b, _ := hs.Encode()
	f.Add(b)
}

// FuzzDecode: no input panics the decoder; what decodes encodes back to
// the same bytes; FrameLen agrees with Decode on the length; a frame with
// a MAC goes through Session.Open without panicking.
func FuzzDecode(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, lerr := FrameLen(b)
		fr, err := Decode(b)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FrameError", err)
			}
			return
		}
		if lerr != nil || n != len(b) {
			t.Fatalf("FrameLen = %d, %v for a frame of %d bytes", n, lerr, len(b))
		}
		out, err := fr.Encode()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", fr, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded % x, input % x", out, b)
		}
		if hasMAC(fr.SCBType) {
			_, pd := pair(t)
			if _, err := pd.Open(b, &fr, fr.SCBType == SCS15 || fr.SCBType == SCS17); err != nil &&
				!errors.Is(err, ErrMAC) && !errors.Is(err, ErrSecure) {
				t.Fatalf("open: %v is neither ErrMAC nor ErrSecure", err)
			}
		}
	})
}

// FuzzReplies: every reply and command parser survives any data and what
// it accepts encodes back to the same bytes.
func FuzzReplies(f *testing.F) {
	f.Add(byte(ReplyPDID), unhex(f, "5C 26 23 19 02 A1 B2 C3 D4 03 01 07"))
	f.Add(byte(ReplyPDCAP), unhex(f, "01 01 04 08 01 00 09 01 00"))
	f.Add(byte(ReplyRaw), unhex(f, "00 01 1A 00 80 80 00 80"))
	f.Add(byte(ReplyKeypad), unhex(f, "00 02 31 32"))
	f.Add(byte(ReplyLStatR), []byte{1, 0})
	f.Add(byte(ReplyCom), unhex(f, "05 00 C2 01 00"))
	f.Add(byte(ReplyCCrypt), make([]byte, 32))
	f.Add(byte(ReplyRMACI), make([]byte, 16))
	f.Add(byte(ReplyNAK), []byte{4})
	f.Add(byte(ReplyFmt), []byte{0, 0, 1, '7'})
	f.Add(byte(CmdOut), unhex(f, "00 05 32 00"))
	f.Add(byte(CmdLED), make([]byte, 14))
	f.Add(byte(CmdText), []byte{0, 1, 0, 0, 0, 2, 'h', 'i'})
	f.Add(byte(CmdKeySet), append([]byte{1, 16}, make([]byte, 16)...))
	f.Add(byte(CmdBuz), []byte{0, 2, 1, 1, 3})
	f.Fuzz(func(t *testing.T, code byte, d []byte) {
		same := func(name string, got []byte) {
			if !bytes.Equal(got, d) {
				t.Fatalf("%s: re-encoded % x, input % x", name, got, d)
			}
		}
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v does not wrap ErrPayload", err)
			}
		}
		switch code {
		case ReplyPDID:
			v, err := ParsePDID(d)
			check(err)
			if err == nil {
				same("pdid", v.Bytes())
			}
		case ReplyPDCAP:
			_, err := ParsePDCAP(d)
			check(err)
		case ReplyRaw:
			v, err := ParseRaw(d)
			check(err)
			if err == nil {
				same("raw", RawData(v))
			}
		case ReplyKeypad:
			v, err := ParseKeypad(d)
			check(err)
			if err == nil {
				same("keypad", KeypadData(v))
			}
		case ReplyLStatR:
			_, err := ParseLStatR(d)
			check(err)
		case ReplyCom:
			v, err := ParseComSet(d)
			check(err)
			if err == nil {
				same("com", ComSetData(v))
			}
		case ReplyCCrypt:
			v, err := ParseCCrypt(d)
			check(err)
			if err == nil {
				same("ccrypt", v.Bytes())
			}
		case ReplyRMACI:
			_, err := ParseRMACI(d)
			check(err)
		case ReplyNAK:
			_, err := ParseNAK(d, CmdPoll)
			check(err)
		case ReplyFmt:
			_, err := ParseFmt(d)
			check(err)
		case CmdOut:
			v, err := ParseOut(d)
			check(err)
			if err == nil {
				same("out", OutData(v...))
			}
		case CmdLED:
			v, err := ParseLED(d)
			check(err)
			if err == nil {
				same("led", LEDData(v...))
			}
		case CmdText:
			v, err := ParseText(d)
			check(err)
			if err == nil {
				b, _ := TextData(v)
				same("text", b)
			}
		case CmdKeySet:
			v, err := ParseKeySet(d)
			check(err)
			if err == nil {
				same("keyset", KeySetData(v))
			}
		case CmdBuz:
			v, err := ParseBuz(d)
			check(err)
			if err == nil {
				same("buz", BuzData(v))
			}
		default:
			_, err := ParseStates("istatr", d)
			check(err)
			_ = ParseBusy(d)
		}
	})
}

// FuzzDecrypt: Session.Decrypt never panics on ciphertext of any shape.
func FuzzDecrypt(f *testing.F) {
	cp, _ := pair(nil)
	f.Add(cp.Encrypt(true, []byte{1, 2, 3}))
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, d []byte) {
		_, pd := pair(t)
		if _, err := pd.Decrypt(true, d); err != nil && !errors.Is(err, ErrSecure) {
			t.Fatalf("error %v does not wrap ErrSecure", err)
		}
	})
}
