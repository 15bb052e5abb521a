package osdpsim

import (
	"bytes"
	"context"
	"errors"
	"math/bits"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
)

var ctx = context.Background()

func TestWiegand26Parity(t *testing.T) {
	for _, c := range []struct {
		fc   byte
		cn   uint16
		want []byte
	}{
		{1, 1, []byte{0x80, 0x80, 0x00, 0x80}},       // 1 00000001 0000000000000001 0
		{0, 0, []byte{0x00, 0x00, 0x00, 0x40}},       // 0 ... 1: odd parity over zeros
		{255, 65535, []byte{0x7F, 0xFF, 0xFF, 0xC0}}, // 0 1..1 1
	} {
		if got := Wiegand26(c.fc, c.cn); !bytes.Equal(got, c.want) {
			t.Errorf("Wiegand26(%d, %d) = % x, want % x", c.fc, c.cn, got, c.want)
		}
	}
	for fc := 0; fc < 256; fc += 17 {
		for cn := 0; cn < 65536; cn += 997 {
			w := uint32(Wiegand26(byte(fc), uint16(cn))[0])<<24 | uint32(Wiegand26(byte(fc), uint16(cn))[1])<<16 |
				uint32(Wiegand26(byte(fc), uint16(cn))[2])<<8 | uint32(Wiegand26(byte(fc), uint16(cn))[3])
			w >>= 6 // 26 bits, first bit at bit 25
			if bits.OnesCount32(w>>13)%2 != 0 {
				t.Fatalf("%d/%d: first 13 bits not even", fc, cn)
			}
			if bits.OnesCount32(w&0x1FFF)%2 != 1 {
				t.Fatalf("%d/%d: last 13 bits not odd", fc, cn)
			}
			if (w>>17)&0xFF != uint32(fc) || (w>>1)&0xFFFF != uint32(cn) {
				t.Fatalf("%d/%d: fields %x", fc, cn, w)
			}
		}
	}
}

func newLine(t testing.TB, cfgs ...ReaderConfig) (*Line, []*Reader) {
	l, err := New(Config{Name: "test", Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*Reader
	for _, c := range cfgs {
		r, err := l.Add(c)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return l, rs
}

func cmd(t testing.TB, f osdp.Frame) []byte {
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reply(t *testing.T, l *Line, req []byte) osdp.Frame {
	t.Helper()
	raw, err := l.Transact(ctx, req, osdp.FrameLen)
	if err != nil {
		t.Fatal(err)
	}
	f, err := osdp.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSequenceRules(t *testing.T) {
	l, rs := newLine(t, ReaderConfig{Addr: 1})
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdID, Data: []byte{0}})); f.Code != osdp.ReplyPDID || f.Seq != 0 {
		t.Fatalf("id: %+v", f)
	}
	rs[0].PresentCard(8, []byte{0xAB})
	poll1 := cmd(t, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdPoll})
	first, err := l.Transact(ctx, poll1, osdp.FrameLen)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Transact(ctx, poll1, osdp.FrameLen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) || rs[0].Counts().Resends != 1 {
		t.Fatalf("resend: % x vs % x", first, again)
	}
	if f, _ := osdp.Decode(first); f.Code != osdp.ReplyRaw {
		t.Fatalf("poll reply %+v", f)
	}
	// Seq 3 after 1: NAK 4, with the command's sequence number.
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, Seq: 3, CRC: true, Code: osdp.CmdPoll})); f.Code != osdp.ReplyNAK || f.Data[0] != osdp.NakSequence || f.Seq != 3 {
		t.Fatalf("out of sequence: %+v", f)
	}
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, Seq: 2, CRC: true, Code: osdp.CmdPoll})); f.Code != osdp.ReplyACK {
		t.Fatalf("in sequence again: %+v", f)
	}
	// Checksum frames get checksum replies, a mark byte is mirrored.
	if raw, _ := l.Transact(ctx, cmd(t, osdp.Frame{Mark: true, Addr: 1, Seq: 3, Code: osdp.CmdPoll}), osdp.FrameLen); raw[0] != osdp.Mark || raw[5]&0x04 != 0 {
		t.Fatalf("checksum reply % x", raw)
	}
	// Unknown command: NAK 3. KEYSET without the secure channel: NAK 6.
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: 0x99})); f.Code != osdp.ReplyNAK || f.Data[0] != osdp.NakUnknown {
		t.Fatalf("unknown: %+v", f)
	}
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, Seq: 2, CRC: true, Code: osdp.CmdKeySet, Data: osdp.KeySetData([16]byte{})})); f.Code != osdp.ReplyNAK || f.Data[0] != osdp.NakSCCond {
		t.Fatalf("keyset: %+v", f)
	}
	// CHLNG to a reader without secure channel: NAK 5.
	if f := reply(t, l, cmd(t, osdp.Frame{Addr: 1, Seq: 3, CRC: true, SCBType: osdp.SCS11, SCBData: []byte{0}, Code: osdp.CmdChlng, Data: make([]byte, 8)})); f.Code != osdp.ReplyNAK || f.Data[0] != osdp.NakSCUnsupp {
		t.Fatalf("chlng: %+v", f)
	}
	// A corrupted CRC: NAK 1.
	bad := cmd(t, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdPoll})
	bad[len(bad)-1] ^= 0xFF
	if f := reply(t, l, bad); f.Code != osdp.ReplyNAK || f.Data[0] != osdp.NakCheck {
		t.Fatalf("bad crc: %+v", f)
	}
}

func TestBroadcastAndSilence(t *testing.T) {
	l, rs := newLine(t, ReaderConfig{Addr: 4})
	f := reply(t, l, cmd(t, osdp.Frame{Addr: osdp.Broadcast, CRC: true, Code: osdp.CmdID, Data: []byte{0}}))
	if f.Addr != osdp.Broadcast || !f.Reply || f.Code != osdp.ReplyPDID {
		t.Fatalf("broadcast reply %+v", f)
	}
	rs[0].SetSilent(true)
	if _, err := l.Transact(ctx, cmd(t, osdp.Frame{Addr: 4, CRC: true, Code: osdp.CmdPoll}), osdp.FrameLen); !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("silent reader: %v", err)
	}
	if _, err := l.Transact(ctx, cmd(t, osdp.Frame{Addr: 5, CRC: true, Code: osdp.CmdPoll}), osdp.FrameLen); !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("no reader: %v", err)
	}
	if _, err := l.Add(ReaderConfig{Addr: 4}); err == nil {
		t.Fatal("two readers at one address")
	}
}

// FuzzReader: no command bytes make a reader panic, and every reply is a
// well-formed frame from the reader's address, also from a reader that
// demands the secure channel and lets it expire.
func FuzzReader(f *testing.F) {
	f.Add(cmd(f, osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdID, Data: []byte{0}}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdOut, Data: []byte{0, 5, 10, 0}}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdLED, Data: make([]byte, 14)}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdText, Data: []byte{0, 1, 0, 0, 0, 1, 'x'}}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 1, CRC: true, SCBType: osdp.SCS11, SCBData: []byte{0}, Code: osdp.CmdChlng, Data: make([]byte, 8)}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 2, CRC: false, SCBType: osdp.SCS13, SCBData: []byte{0}, Code: osdp.CmdSCrypt, Data: make([]byte, 16)}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, Seq: 1, CRC: true, Code: osdp.CmdComSet, Data: []byte{1, 0x80, 0x25, 0, 0}}), false)
	f.Add(cmd(f, osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdLStat}), true)
	f.Add(cmd(f, osdp.Frame{Addr: 1, CRC: true, Code: osdp.CmdCap, Data: []byte{0}}), true)
	f.Fuzz(func(t *testing.T, b []byte, strict bool) {
		// strict: a reader that demands the secure channel and drops it
		// between commands (SessionTimeout shorter than any gap).
		cfg := ReaderConfig{Addr: 1, Secure: true, InstallMode: true, Outputs: 2, RequireSecure: strict}
		if strict {
			cfg.SessionTimeout = time.Nanosecond
		}
		l, _ := newLine(t, cfg)
		if n, err := osdp.FrameLen(b); err != nil || n != len(b) || n == 0 {
			return
		}
		raw, err := l.Transact(ctx, b, osdp.FrameLen)
		if err != nil {
			return
		}
		f, err := osdp.Decode(raw)
		if err != nil || !f.Reply {
			t.Fatalf("reply % x: %+v %v", raw, f, err)
		}
	})
}
