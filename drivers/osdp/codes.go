package osdp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Command codes (CP to PD).
const (
	CmdPoll    = 0x60
	CmdID      = 0x61
	CmdCap     = 0x62
	CmdLStat   = 0x64
	CmdIStat   = 0x65
	CmdOStat   = 0x66
	CmdRStat   = 0x67
	CmdOut     = 0x68
	CmdLED     = 0x69
	CmdBuz     = 0x6A
	CmdText    = 0x6B
	CmdComSet  = 0x6E
	CmdKeySet  = 0x75
	CmdChlng   = 0x76
	CmdSCrypt  = 0x77
	CmdACUSize = 0x7B
	CmdMfg     = 0x80
	CmdAbort   = 0xA2
	CmdKeepAct = 0xA7
)

// Reply codes (PD to CP).
const (
	ReplyACK    = 0x40
	ReplyNAK    = 0x41
	ReplyPDID   = 0x45
	ReplyPDCAP  = 0x46
	ReplyLStatR = 0x48
	ReplyIStatR = 0x49
	ReplyOStatR = 0x4A
	ReplyRStatR = 0x4B
	ReplyRaw    = 0x50
	ReplyFmt    = 0x51
	ReplyKeypad = 0x53
	ReplyCom    = 0x54
	ReplyCCrypt = 0x76
	ReplyRMACI  = 0x78
	ReplyBusy   = 0x79
	ReplyMfgRep = 0x90
)

// NAK error codes.
const (
	NakCheck     = 1 // bad CRC or checksum
	NakLength    = 2 // bad command length
	NakUnknown   = 3 // unknown command
	NakSequence  = 4 // unexpected sequence number
	NakSCUnsupp  = 5 // secure channel not supported
	NakSCCond    = 6 // secure channel condition not met (or bad MAC)
	NakBioType   = 7
	NakBioFormat = 8
	NakRecord    = 9
)

// ErrNAK is wrapped by NAKError.
var ErrNAK = errors.New("reader refused the command (nak)")

// ErrPayload is wrapped by errors about a reply's or command's data.
var ErrPayload = errors.New("malformed osdp payload")

// NAKError is a NAK reply, with its code.
type NAKError struct {
	Code    byte // NakCheck ...
	Command byte // the command it answered
}

func (e *NAKError) Error() string {
	return fmt.Sprintf("nak %d (%s) to command %#02x", e.Code, NakText(e.Code), e.Command)
}

// Unwrap lets errors.Is find ErrNAK.
func (e *NAKError) Unwrap() error { return ErrNAK }

// NakText names a NAK code.
func NakText(code byte) string {
	switch code {
	case NakCheck:
		return "bad crc or checksum"
	case NakLength:
		return "bad length"
	case NakUnknown:
		return "unknown command"
	case NakSequence:
		return "sequence number"
	case NakSCUnsupp:
		return "secure channel unsupported"
	case NakSCCond:
		return "secure channel condition"
	case NakBioType:
		return "biometric type"
	case NakBioFormat:
		return "biometric format"
	case NakRecord:
		return "cannot process record"
	}
	return "unknown nak code"
}

func payloadErr(what string, format string, a ...any) error {
	return fmt.Errorf("osdp %s: %s: %w", what, fmt.Sprintf(format, a...), ErrPayload)
}

// ---- command builders: each returns the data that follows the code ----

// IDData is the data of ID and CAP: the standard request 0x00.
func IDData() []byte { return []byte{0} }

// OutControl is the control code of an OUT command.
type OutControl byte

// OUT control codes.
const (
	OutNop         OutControl = 0
	OutOffAbort    OutControl = 1 // permanent off, abort a timed operation
	OutOnAbort     OutControl = 2 // permanent on, abort a timed operation
	OutOffAfter    OutControl = 3 // permanent off when the timed operation ends
	OutOnAfter     OutControl = 4 // permanent on when the timed operation ends
	OutTempOn      OutControl = 5 // temporary on for Timer, then back
	OutTempOff     OutControl = 6 // temporary off for Timer, then back
	outControlLast            = OutTempOff
)

// Output is one OUT record: output number, control code and timer in
// 100 ms units (for temporary codes).
type Output struct {
	Number  byte
	Control OutControl
	Timer   uint16 // 100 ms units
}

// OutData encodes OUT records (4 bytes each).
func OutData(outs ...Output) []byte {
	b := make([]byte, 0, 4*len(outs))
	for _, o := range outs {
		b = append(b, o.Number, byte(o.Control))
		b = binary.LittleEndian.AppendUint16(b, o.Timer)
	}
	return b
}

// ParseOut reads OUT records.
func ParseOut(d []byte) ([]Output, error) {
	if len(d) == 0 || len(d)%4 != 0 {
		return nil, payloadErr("out", "%d bytes: want a multiple of 4", len(d))
	}
	out := make([]Output, 0, len(d)/4)
	for i := 0; i < len(d); i += 4 {
		c := OutControl(d[i+1])
		if c > outControlLast {
			return nil, payloadErr("out", "record %d: control code %d: want 0..6", i/4, c)
		}
		out = append(out, Output{Number: d[i], Control: c, Timer: binary.LittleEndian.Uint16(d[i+2:])})
	}
	return out, nil
}

// Colors of LED commands.
const (
	ColorBlack = 0
	ColorRed   = 1
	ColorGreen = 2
	ColorAmber = 3
	ColorBlue  = 4
)

// LED is one LED record (14 bytes on the wire): a temporary pattern that
// runs for TempTimer (100 ms units) and the permanent state it returns to.
// Control codes: 0 no change, 1 cancel temporary / set permanent, 2 set.
// On and off times are in 100 ms units.
type LED struct {
	Reader, Number               byte
	TempControl, TempOn, TempOff byte
	TempOnColor, TempOffColor    byte
	TempTimer                    uint16
	PermControl, PermOn, PermOff byte
	PermOnColor, PermOffColor    byte
}

const ledLen = 14

// LEDData encodes LED records.
func LEDData(leds ...LED) []byte {
	b := make([]byte, 0, ledLen*len(leds))
	for _, l := range leds {
		b = append(b, l.Reader, l.Number, l.TempControl, l.TempOn, l.TempOff, l.TempOnColor, l.TempOffColor)
		b = binary.LittleEndian.AppendUint16(b, l.TempTimer)
		b = append(b, l.PermControl, l.PermOn, l.PermOff, l.PermOnColor, l.PermOffColor)
	}
	return b
}

// ParseLED reads LED records.
func ParseLED(d []byte) ([]LED, error) {
	if len(d) == 0 || len(d)%ledLen != 0 {
		return nil, payloadErr("led", "%d bytes: want a multiple of %d", len(d), ledLen)
	}
	var out []LED
	for i := 0; i < len(d); i += ledLen {
		r := d[i:]
		out = append(out, LED{Reader: r[0], Number: r[1], TempControl: r[2], TempOn: r[3], TempOff: r[4],
			TempOnColor: r[5], TempOffColor: r[6], TempTimer: binary.LittleEndian.Uint16(r[7:]),
			PermControl: r[9], PermOn: r[10], PermOff: r[11], PermOnColor: r[12], PermOffColor: r[13]})
	}
	return out, nil
}

// Buzzer is a BUZ command: tone 0 none, 1 off, 2 default tone; on and off
// times in 100 ms units; Count repetitions (0 = until told otherwise).
type Buzzer struct {
	Reader, Tone, On, Off, Count byte
}

// BuzData encodes a BUZ command.
func BuzData(z Buzzer) []byte { return []byte{z.Reader, z.Tone, z.On, z.Off, z.Count} }

// ParseBuz reads a BUZ command.
func ParseBuz(d []byte) (Buzzer, error) {
	if len(d) != 5 {
		return Buzzer{}, payloadErr("buz", "%d bytes: want 5", len(d))
	}
	return Buzzer{d[0], d[1], d[2], d[3], d[4]}, nil
}

// Text is a TEXT command: command 1 permanent no wrap, 2 permanent wrap,
// 3 temporary no wrap, 4 temporary wrap; TempTime in seconds.
type Text struct {
	Reader, Command, TempTime, Row, Col byte
	Text                                string
}

// TextData encodes a TEXT command. Text is at most 255 bytes.
func TextData(t Text) ([]byte, error) {
	if len(t.Text) > 255 {
		return nil, payloadErr("text", "%d bytes of text: want at most 255", len(t.Text))
	}
	b := []byte{t.Reader, t.Command, t.TempTime, t.Row, t.Col, byte(len(t.Text))}
	return append(b, t.Text...), nil
}

// ParseText reads a TEXT command.
func ParseText(d []byte) (Text, error) {
	if len(d) < 6 || len(d) != 6+int(d[5]) {
		return Text{}, payloadErr("text", "%d bytes: want 6 plus the length byte's count", len(d))
	}
	return Text{d[0], d[1], d[2], d[3], d[4], string(d[6:])}, nil
}

// ComSet is the data of COMSET and of its reply COM: a new address and
// baud rate.
type ComSet struct {
	Addr byte
	Baud uint32
}

// ComSetData encodes COMSET.
func ComSetData(c ComSet) []byte {
	return binary.LittleEndian.AppendUint32([]byte{c.Addr}, c.Baud)
}

// ParseComSet reads COMSET data or a COM reply.
func ParseComSet(d []byte) (ComSet, error) {
	if len(d) != 5 {
		return ComSet{}, payloadErr("com", "%d bytes: want 5", len(d))
	}
	if d[0] > 126 {
		return ComSet{}, payloadErr("com", "address %d: want 0..126", d[0])
	}
	return ComSet{d[0], binary.LittleEndian.Uint32(d[1:])}, nil
}

// KeySetData encodes KEYSET with a new SCBK (type 1, 16 bytes).
func KeySetData(key [16]byte) []byte { return append([]byte{1, 16}, key[:]...) }

// ParseKeySet reads KEYSET data.
func ParseKeySet(d []byte) ([16]byte, error) {
	var k [16]byte
	if len(d) != 18 || d[0] != 1 || d[1] != 16 {
		return k, payloadErr("keyset", "% x: want 01 10 and a 16-byte key", d)
	}
	copy(k[:], d[2:])
	return k, nil
}

// ---- reply parsers ----

// ParseNAK reads a NAK reply; cmd is the command it answered.
func ParseNAK(d []byte, cmd byte) (*NAKError, error) {
	if len(d) < 1 {
		return nil, payloadErr("nak", "empty: want an error code")
	}
	return &NAKError{Code: d[0], Command: cmd}, nil
}

// PDID is a reader's identification (reply to ID).
type PDID struct {
	VendorOUI [3]byte // as sent (low byte first)
	Model     byte
	Version   byte
	Serial    uint32
	Firmware  [3]byte // major, minor, build
}

// Vendor is the OUI as a number (first byte sent is the low byte).
func (p PDID) Vendor() uint32 {
	return uint32(p.VendorOUI[0]) | uint32(p.VendorOUI[1])<<8 | uint32(p.VendorOUI[2])<<16
}

// FirmwareString is "major.minor.build".
func (p PDID) FirmwareString() string {
	return fmt.Sprintf("%d.%d.%d", p.Firmware[0], p.Firmware[1], p.Firmware[2])
}

// Bytes encodes p as the PDID reply data.
func (p PDID) Bytes() []byte {
	b := append(p.VendorOUI[:0:0], p.VendorOUI[:]...)
	b = append(b, p.Model, p.Version)
	b = binary.LittleEndian.AppendUint32(b, p.Serial)
	return append(b, p.Firmware[:]...)
}

// ParsePDID reads a PDID reply.
func ParsePDID(d []byte) (PDID, error) {
	var p PDID
	if len(d) != 12 {
		return p, payloadErr("pdid", "%d bytes: want 12", len(d))
	}
	copy(p.VendorOUI[:], d)
	p.Model, p.Version = d[3], d[4]
	p.Serial = binary.LittleEndian.Uint32(d[5:])
	copy(p.Firmware[:], d[9:])
	return p, nil
}

// Capability function codes in PDCAP.
const (
	CapContactStatus = 1
	CapOutput        = 2
	CapCardFormat    = 3
	CapLED           = 4
	CapAudible       = 5
	CapText          = 6
	CapTime          = 7
	CapCRC           = 8
	CapSecurity      = 9
	CapRecvBuffer    = 10
	CapLargestMsg    = 11
	CapReaders       = 13
	CapBiometrics    = 14
)

// Capability is one PDCAP triplet.
type Capability struct {
	Function, Compliance, Count byte
}

// Caps is a reader's capabilities by function code.
type Caps map[byte]Capability

// CRC reports whether the reader checks frames with CRC-16.
func (c Caps) CRC() bool { return c[CapCRC].Compliance&1 != 0 }

// SecureChannel reports whether the reader supports AES-128 secure channel.
func (c Caps) SecureChannel() bool { return c[CapSecurity].Compliance&1 != 0 }

// ParsePDCAP reads a PDCAP reply.
func ParsePDCAP(d []byte) (Caps, error) {
	if len(d) == 0 || len(d)%3 != 0 {
		return nil, payloadErr("pdcap", "%d bytes: want a non-empty multiple of 3", len(d))
	}
	c := Caps{}
	for i := 0; i < len(d); i += 3 {
		if d[i] == 0 {
			return nil, payloadErr("pdcap", "triplet %d: function code 0", i/3)
		}
		c[d[i]] = Capability{d[i], d[i+1], d[i+2]}
	}
	return c, nil
}

// CapData encodes capabilities in the given order.
func CapData(cs ...Capability) []byte {
	b := make([]byte, 0, 3*len(cs))
	for _, c := range cs {
		b = append(b, c.Function, c.Compliance, c.Count)
	}
	return b
}

// LocalStatus is LSTATR: tamper and power.
type LocalStatus struct {
	Tamper bool
	Power  bool // true means a power failure
}

// ParseLStatR reads LSTATR.
func ParseLStatR(d []byte) (LocalStatus, error) {
	if len(d) != 2 {
		return LocalStatus{}, payloadErr("lstatr", "%d bytes: want 2", len(d))
	}
	for i, v := range d {
		if v > 1 {
			return LocalStatus{}, payloadErr("lstatr", "byte %d is %d: want 0 or 1", i, v)
		}
	}
	return LocalStatus{d[0] == 1, d[1] == 1}, nil
}

// ParseStates reads ISTATR, OSTATR and RSTATR: one byte per input, output
// or reader.
func ParseStates(what string, d []byte) ([]byte, error) {
	if len(d) == 0 {
		return nil, payloadErr(what, "empty: want one byte per point")
	}
	return append([]byte(nil), d...), nil
}

// Card is a card read (RAW reply).
type Card struct {
	Reader byte
	Format byte // 0 unspecified, 1 Wiegand
	Bits   int  // number of valid bits
	Data   []byte
}

// Hex is the card data as lowercase hex.
func (c Card) Hex() string { return hex.EncodeToString(c.Data) }

// RawData encodes a RAW reply.
func RawData(c Card) []byte {
	b := []byte{c.Reader, c.Format}
	b = binary.LittleEndian.AppendUint16(b, uint16(c.Bits))
	return append(b, c.Data...)
}

// ParseRaw reads a RAW card-data reply.
func ParseRaw(d []byte) (Card, error) {
	if len(d) < 4 {
		return Card{}, payloadErr("raw", "%d bytes: want at least 4", len(d))
	}
	bits := int(binary.LittleEndian.Uint16(d[2:]))
	if want := (bits + 7) / 8; len(d)-4 != want || bits == 0 {
		return Card{}, payloadErr("raw", "%d bits in %d data bytes: want %d bytes and at least 1 bit", bits, len(d)-4, want)
	}
	if d[1] > 1 {
		return Card{}, payloadErr("raw", "format %d: want 0 (unspecified) or 1 (wiegand)", d[1])
	}
	return Card{Reader: d[0], Format: d[1], Bits: bits, Data: append([]byte(nil), d[4:]...)}, nil
}

// FormattedCard is a FMT reply (deprecated in OSDP 2.2): card data as text.
type FormattedCard struct {
	Reader, Direction byte
	Text              string
}

// ParseFmt reads an FMT reply.
func ParseFmt(d []byte) (FormattedCard, error) {
	if len(d) < 3 || len(d) != 3+int(d[2]) {
		return FormattedCard{}, payloadErr("fmt", "%d bytes: want 3 plus the length byte's count", len(d))
	}
	return FormattedCard{d[0], d[1], string(d[3:])}, nil
}

// Keypad is a KEYPAD reply: digits as ASCII ('0'..'9', '*', '#', or
// 0x7F/0x0D for clear/enter on some readers).
type Keypad struct {
	Reader byte
	Keys   string
}

// KeypadData encodes a KEYPAD reply.
func KeypadData(k Keypad) []byte {
	return append([]byte{k.Reader, byte(len(k.Keys))}, k.Keys...)
}

// ParseKeypad reads a KEYPAD reply.
func ParseKeypad(d []byte) (Keypad, error) {
	if len(d) < 2 || len(d) != 2+int(d[1]) {
		return Keypad{}, payloadErr("keypad", "%d bytes: want 2 plus the count byte's digits", len(d))
	}
	return Keypad{d[0], string(d[2:])}, nil
}

// CCrypt is the PD's answer to CHLNG.
type CCrypt struct {
	CUID         [8]byte
	RndB         [8]byte
	PDCryptogram [16]byte
}

// Bytes encodes c.
func (c CCrypt) Bytes() []byte {
	b := append(c.CUID[:0:0], c.CUID[:]...)
	b = append(b, c.RndB[:]...)
	return append(b, c.PDCryptogram[:]...)
}

// ParseCCrypt reads CCRYPT.
func ParseCCrypt(d []byte) (CCrypt, error) {
	var c CCrypt
	if len(d) != 32 {
		return c, payloadErr("ccrypt", "%d bytes: want 32 (cuid, rnd.b, cryptogram)", len(d))
	}
	copy(c.CUID[:], d)
	copy(c.RndB[:], d[8:])
	copy(c.PDCryptogram[:], d[16:])
	return c, nil
}

// ParseRMACI reads RMAC_I: the 16-byte initial reply MAC.
func ParseRMACI(d []byte) ([16]byte, error) {
	var m [16]byte
	if len(d) != 16 {
		return m, payloadErr("rmac_i", "%d bytes: want 16", len(d))
	}
	copy(m[:], d)
	return m, nil
}

// ParseBusy checks a BUSY reply (no data).
func ParseBusy(d []byte) error {
	if len(d) != 0 {
		return payloadErr("busy", "%d bytes: want none", len(d))
	}
	return nil
}
