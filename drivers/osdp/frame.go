package osdp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/luling-edge/luling/drivers"
)

// Frame layout constants.
const (
	Mark      = 0xFF // optional byte before the start of message
	SOM       = 0x53 // start of message
	Broadcast = 0x7F // the address every PD answers
	ReplyBit  = 0x80 // set in the address of replies

	ctrlSeq = 0x03
	ctrlCRC = 0x04
	ctrlSCB = 0x08

	// MaxFrame is the longest frame this package accepts (LEN field).
	MaxFrame = 1024
	// minFrame is SOM, address, LEN (2), CTRL, code and a checksum.
	minFrame = 7
	macLen   = 4
)

// Security Control Block types.
const (
	SCS11 = 0x11 // CHLNG
	SCS12 = 0x12 // CCRYPT
	SCS13 = 0x13 // SCRYPT
	SCS14 = 0x14 // RMAC_I
	SCS15 = 0x15 // command, MAC only
	SCS16 = 0x16 // reply, MAC only
	SCS17 = 0x17 // command, MAC and encrypted data
	SCS18 = 0x18 // reply, MAC and encrypted data
)

// Errors that callers branch on.
var (
	// ErrFrame means bytes are not a well-formed OSDP frame.
	ErrFrame = errors.New("malformed osdp frame")
	// ErrCheck means the frame's CRC or checksum does not match (a PD
	// answers it with NAK 1).
	ErrCheck = errors.New("osdp frame check mismatch")
)

// FrameError says where a frame went wrong and what was expected there.
// It wraps ErrFrame, or ErrCheck for a CRC or checksum mismatch.
type FrameError struct {
	Offset int    // byte offset in the frame (mark byte included)
	Field  string // "som", "len", "ctrl", "scb", "mac", "crc", "checksum", ...
	Msg    string // what was found and expected
	check  bool
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("osdp frame: %s at byte %d: %s", e.Field, e.Offset, e.Msg)
}

// Unwrap lets errors.Is find ErrFrame, or ErrCheck and drivers.ErrCRC
// (which the gateway counts for every protocol).
func (e *FrameError) Unwrap() []error {
	if e.check {
		return []error{ErrCheck, drivers.ErrCRC}
	}
	return []error{ErrFrame}
}

func frameErr(off int, field, format string, a ...any) error {
	return &FrameError{Offset: off, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Frame is one OSDP message, command or reply.
type Frame struct {
	Mark    bool   // a 0xFF mark byte precedes SOM
	Addr    byte   // 0..126, or Broadcast
	Reply   bool   // the address has ReplyBit set (PD to CP)
	Seq     byte   // sequence number 0..3
	CRC     bool   // CRC-16 check; false means one-byte checksum
	SCBType byte   // 0 when there is no Security Control Block
	SCBData []byte // the SCB's data bytes (after its length and type)
	Code    byte   // command or reply code
	Data    []byte // data after the code (ciphertext while encrypted)
	MAC     []byte // 4 bytes when SCBType is SCS15..SCS18
}

// hasMAC reports whether frames with this SCB type carry a MAC.
func hasMAC(scbType byte) bool { return scbType >= SCS15 && scbType <= SCS18 }

func (f *Frame) checkLen() int {
	if f.CRC {
		return 2
	}
	return 1
}

// wireLen is the LEN field of f (mark byte excluded).
func (f *Frame) wireLen() int {
	n := 5 + 1 + len(f.Data) + f.checkLen()
	if f.SCBType != 0 {
		n += 2 + len(f.SCBData)
	}
	if hasMAC(f.SCBType) {
		n += macLen
	}
	return n
}

// appendBody appends the frame from the mark (if any) through the data and
// returns the buffer and the offset of SOM.
func (f *Frame) appendBody(dst []byte) ([]byte, int, error) {
	if f.Addr > Broadcast {
		return dst, 0, fmt.Errorf("osdp frame: address %d: want 0..127", f.Addr)
	}
	if f.Seq > 3 {
		return dst, 0, fmt.Errorf("osdp frame: sequence %d: want 0..3", f.Seq)
	}
	n := f.wireLen()
	if n > MaxFrame {
		return dst, 0, fmt.Errorf("osdp frame: %d bytes: want at most %d", n, MaxFrame)
	}
	if f.SCBType != 0 && len(f.SCBData) > 253 {
		return dst, 0, fmt.Errorf("osdp frame: scb data %d bytes: want at most 253", len(f.SCBData))
	}
	if f.Mark {
		dst = append(dst, Mark)
	}
	som := len(dst)
	addr := f.Addr
	if f.Reply {
		addr |= ReplyBit
	}
	ctrl := f.Seq & ctrlSeq
	if f.CRC {
		ctrl |= ctrlCRC
	}
	if f.SCBType != 0 {
		ctrl |= ctrlSCB
	}
	dst = append(dst, SOM, addr, byte(n), byte(n>>8), ctrl)
	if f.SCBType != 0 {
		dst = append(dst, byte(2+len(f.SCBData)), f.SCBType)
		dst = append(dst, f.SCBData...)
	}
	dst = append(dst, f.Code)
	dst = append(dst, f.Data...)
	return dst, som, nil
}

func (f *Frame) appendCheck(dst []byte, som int) []byte {
	if f.CRC {
		return binary.LittleEndian.AppendUint16(dst, CRC16(dst[som:]))
	}
	return append(dst, Checksum(dst[som:]))
}

// Append encodes f onto dst. A frame whose SCB type calls for a MAC must
// carry one of 4 bytes in f.MAC (Session.Seal computes it).
func (f *Frame) Append(dst []byte) ([]byte, error) {
	if hasMAC(f.SCBType) != (len(f.MAC) != 0) || (len(f.MAC) != 0 && len(f.MAC) != macLen) {
		return dst, fmt.Errorf("osdp frame: scb type %#02x with a %d-byte mac: want 4 bytes exactly for types 0x15..0x18", f.SCBType, len(f.MAC))
	}
	out, som, err := f.appendBody(dst)
	if err != nil {
		return dst, err
	}
	out = append(out, f.MAC...)
	return f.appendCheck(out, som), nil
}

// Encode returns f's bytes.
func (f *Frame) Encode() ([]byte, error) { return f.Append(nil) }

// FrameLen is the drivers.FrameLenFunc of OSDP: it reads SOM (after an
// optional mark byte) and LEN, and returns the frame's total length
// including the mark byte.
func FrameLen(prefix []byte) (int, error) {
	off := 0
	if len(prefix) > 0 && prefix[0] == Mark {
		off = 1
	}
	if len(prefix) <= off {
		return 0, nil
	}
	if prefix[off] != SOM {
		return 0, frameErr(off, "som", "got %#02x, want 0x53", prefix[off])
	}
	if len(prefix) < off+4 {
		return 0, nil
	}
	n := int(binary.LittleEndian.Uint16(prefix[off+2:]))
	if n < minFrame || n > MaxFrame {
		return 0, frameErr(off+2, "len", "got %d, want %d..%d", n, minFrame, MaxFrame)
	}
	return off + n, nil
}

// Decode parses one complete frame. Data, SCBData and MAC alias b.
func Decode(b []byte) (Frame, error) {
	var f Frame
	off := 0
	if len(b) > 0 && b[0] == Mark {
		f.Mark = true
		off = 1
	}
	if len(b) < off+minFrame {
		return f, frameErr(len(b), "len", "frame of %d bytes: want at least %d", len(b), off+minFrame)
	}
	if b[off] != SOM {
		return f, frameErr(off, "som", "got %#02x, want 0x53", b[off])
	}
	p := b[off:]
	n := int(binary.LittleEndian.Uint16(p[2:]))
	if n != len(p) {
		return f, frameErr(off+2, "len", "field says %d bytes, frame has %d", n, len(p))
	}
	f.Addr = p[1] &^ ReplyBit
	f.Reply = p[1]&ReplyBit != 0
	ctrl := p[4]
	if ctrl&^(ctrlSeq|ctrlCRC|ctrlSCB) != 0 {
		return f, frameErr(off+4, "ctrl", "%#02x has reserved bits set: want only 0x0F", ctrl)
	}
	f.Seq = ctrl & ctrlSeq
	f.CRC = ctrl&ctrlCRC != 0
	end := len(p) - f.checkLen()
	if f.CRC {
		got := binary.LittleEndian.Uint16(p[end:])
		if want := CRC16(p[:end]); got != want {
			return f, &FrameError{Offset: off + end, Field: "crc", Msg: fmt.Sprintf("got %#04x, computed %#04x", got, want), check: true}
		}
	} else if got, want := p[end], Checksum(p[:end]); got != want {
		return f, &FrameError{Offset: off + end, Field: "checksum", Msg: fmt.Sprintf("got %#02x, computed %#02x", got, want), check: true}
	}
	i := 5
	if ctrl&ctrlSCB != 0 {
		if i >= end {
			return f, frameErr(off+i, "scb", "frame ends before its security block")
		}
		sl := int(p[i])
		if sl < 2 || i+sl >= end {
			return f, frameErr(off+i, "scb", "length %d: want 2.. and room for the code byte", sl)
		}
		f.SCBType = p[i+1]
		if f.SCBType < SCS11 || f.SCBType > SCS18 {
			return f, frameErr(off+i+1, "scb", "type %#02x: want 0x11..0x18", f.SCBType)
		}
		f.SCBData = p[i+2 : i+sl]
		i += sl
	}
	if hasMAC(f.SCBType) {
		if end-macLen <= i {
			return f, frameErr(off+i, "mac", "no room for code and 4-byte mac")
		}
		f.MAC = p[end-macLen : end]
		end -= macLen
	}
	if i >= end {
		return f, frameErr(off+i, "code", "frame has no code byte")
	}
	f.Code = p[i]
	f.Data = p[i+1 : end]
	return f, nil
}

// macSpan returns the bytes a frame's MAC covers: SOM through the end of
// the data (the MAC itself and the check excluded).
func macSpan(raw []byte, f *Frame) []byte {
	off := 0
	if f.Mark {
		off = 1
	}
	end := len(raw) - f.checkLen() - macLen
	if end < off {
		return nil
	}
	return raw[off:end]
}
