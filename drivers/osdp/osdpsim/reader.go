package osdpsim

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers/osdp"
)

// ReaderConfig describes a simulated reader.
type ReaderConfig struct {
	Addr byte      // 0..126
	ID   osdp.PDID // zero: a made-up vendor with serial 1000+Addr
	// Caps replaces the default capabilities (one reader, LEDs, buzzer,
	// text, CRC, AES-128 when Secure, Inputs and Outputs).
	Caps []osdp.Capability
	// Secure supports the secure channel.
	Secure bool
	// SCBK is the reader's own key; nil until KEYSET gives it one.
	SCBK *[16]byte
	// InstallMode accepts SCBK-D (until KEYSET).
	InstallMode bool
	// ChecksumOnly answers CRC-16 frames with NAK 1.
	ChecksumOnly bool
	// RequireSecure answers every command but ID, CAP, CHLNG and SCRYPT
	// with NAK 6 while no secure channel is up, as a reader set to demand
	// it does (libosdp's OSDP_FLAG_ENFORCE_SECURE).
	RequireSecure bool
	// SessionTimeout drops the secure channel after this long without a
	// command, as the spec's reader does after 8 s; 0 keeps it.
	SessionTimeout time.Duration
	// Now is the reader's clock for SessionTimeout; nil: the time a
	// command arrived.
	Now func() time.Time

	Inputs  int // number of inputs (default 2)
	Outputs int // number of outputs (default 1)
	// Rand gives RND.B; default crypto/rand.
	Rand io.Reader
}

// OutRecord is one OUT record as the reader received it.
type OutRecord struct {
	At time.Time // when the command was received
	osdp.Output
}

// Reader is one simulated PD.
type Reader struct {
	line *Line

	mu        sync.Mutex
	addr      byte
	cfg       ReaderConfig
	caps      []byte
	scbk      *[16]byte
	install   bool
	lastSeq   int // -1: none yet
	lastCode  byte
	lastReply []byte
	pending   *osdp.Session // between CHLNG and SCRYPT
	sc        *osdp.Session
	reports   [][]byte // queued POLL replies: code then data
	tamper    bool
	power     bool
	inputs    []byte
	outs      []OutRecord
	outState  []bool
	leds      []osdp.LED
	buz       []osdp.Buzzer
	text      []osdp.Text
	busy      int
	drop      int
	corrupt   int
	silent    bool
	lastCmd   time.Time // when the last command arrived, for SessionTimeout
	counts    Counts
}

// Counts are a reader's counters.
type Counts struct {
	Commands  int          // commands handled (resends included)
	ByCode    map[byte]int // commands by code
	Resends   int          // cached replies replayed
	NAKs      map[byte]int // NAKs sent, by code
	Dropped   int          // replies lost on purpose
	Busy      int          // BUSY replies sent
	SCUp      int          // secure channels established
	SCExpired int          // secure channels dropped after SessionTimeout
	MACErrors int          // commands with a bad MAC
}

// Add puts a reader on the line.
func (l *Line) Add(cfg ReaderConfig) (*Reader, error) {
	if cfg.Addr > 126 {
		return nil, fmt.Errorf("osdpsim: %s: reader address %d: want 0..126", l.name, cfg.Addr)
	}
	if cfg.ID == (osdp.PDID{}) {
		cfg.ID = osdp.PDID{VendorOUI: [3]byte{0x4C, 0x55, 0x4C}, Model: 1, Version: 1, Serial: 1000 + uint32(cfg.Addr), Firmware: [3]byte{2, 2, 0}}
	}
	if cfg.Inputs == 0 {
		cfg.Inputs = 2
	}
	if cfg.Outputs == 0 {
		cfg.Outputs = 1
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	caps := cfg.Caps
	if caps == nil {
		crc := byte(1)
		if cfg.ChecksumOnly {
			crc = 0
		}
		sec := byte(0)
		if cfg.Secure {
			sec = 1
		}
		caps = []osdp.Capability{
			{Function: osdp.CapContactStatus, Compliance: 1, Count: byte(cfg.Inputs)},
			{Function: osdp.CapOutput, Compliance: 1, Count: byte(cfg.Outputs)},
			{Function: osdp.CapCardFormat, Compliance: 1, Count: 0},
			{Function: osdp.CapLED, Compliance: 1, Count: 1},
			{Function: osdp.CapAudible, Compliance: 1, Count: 1},
			{Function: osdp.CapText, Compliance: 1, Count: 1},
			{Function: osdp.CapCRC, Compliance: crc, Count: 0},
			{Function: osdp.CapSecurity, Compliance: sec, Count: 0},
			{Function: osdp.CapRecvBuffer, Compliance: 0, Count: 1},
			{Function: osdp.CapReaders, Compliance: 0, Count: 1},
		}
	}
	r := &Reader{line: l, addr: cfg.Addr, cfg: cfg, caps: osdp.CapData(caps...), scbk: cfg.SCBK, install: cfg.InstallMode,
		lastSeq: -1, inputs: make([]byte, cfg.Inputs), outState: make([]bool, cfg.Outputs),
		counts: Counts{ByCode: map[byte]int{}, NAKs: map[byte]int{}}}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.readers[cfg.Addr]; dup {
		return nil, fmt.Errorf("osdpsim: %s: two readers at address %d", l.name, cfg.Addr)
	}
	l.readers[cfg.Addr] = r
	return r, nil
}

// Addr is the reader's current address.
func (r *Reader) Addr() byte { r.mu.Lock(); defer r.mu.Unlock(); return r.addr }

// PresentCard queues a card read of bits valid bits (MSB first in data),
// reported as RAW Wiegand data in the reply to the next POLL.
func (r *Reader) PresentCard(bits int, data []byte) {
	r.queue(osdp.ReplyRaw, osdp.RawData(osdp.Card{Reader: 0, Format: 1, Bits: bits, Data: data}))
}

// PresentWiegand26 queues an H10301 26-bit card with facility code fc and
// card number cn, parity bits included.
func (r *Reader) PresentWiegand26(fc byte, cn uint16) []byte {
	data := Wiegand26(fc, cn)
	r.PresentCard(26, data)
	return data
}

// Wiegand26 returns the 26 bits of an H10301 card (even parity over the
// first 12 data bits, odd over the last 12) packed MSB first in 4 bytes.
func Wiegand26(fc byte, cn uint16) []byte {
	v := uint32(fc)<<16 | uint32(cn) // 24 data bits
	ones := func(x uint32) int {
		n := 0
		for ; x != 0; x &= x - 1 {
			n++
		}
		return n
	}
	even := uint32(ones(v>>12) & 1)    // makes bits 1..13 even
	odd := uint32(1 - ones(v&0xFFF)&1) // makes bits 14..26 odd
	w := even<<25 | v<<1 | odd
	return binary.BigEndian.AppendUint32(nil, w<<6)
}

// Keys queues keypad digits.
func (r *Reader) Keys(keys string) {
	r.queue(osdp.ReplyKeypad, osdp.KeypadData(osdp.Keypad{Keys: keys}))
}

// SetTamper changes the tamper switch; the change is reported in LSTATR.
func (r *Reader) SetTamper(on bool) {
	r.mu.Lock()
	r.tamper = on
	d := r.lstat()
	r.mu.Unlock()
	r.queue(osdp.ReplyLStatR, d)
}

// SetPower reports a power failure (true) or its end; as LSTATR.
func (r *Reader) SetPower(fail bool) {
	r.mu.Lock()
	r.power = fail
	d := r.lstat()
	r.mu.Unlock()
	r.queue(osdp.ReplyLStatR, d)
}

// SetInput changes an input; the change is reported in ISTATR.
func (r *Reader) SetInput(n int, active bool) error {
	r.mu.Lock()
	if n < 0 || n >= len(r.inputs) {
		r.mu.Unlock()
		return fmt.Errorf("osdpsim: reader %d: input %d: want 0..%d", r.addr, n, len(r.inputs)-1)
	}
	r.inputs[n] = b2i(active)
	d := append([]byte(nil), r.inputs...)
	r.mu.Unlock()
	r.queue(osdp.ReplyIStatR, d)
	return nil
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (r *Reader) lstat() []byte { return []byte{b2i(r.tamper), b2i(r.power)} }

func (r *Reader) queue(code byte, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, append([]byte{code}, data...))
}

// Busy makes the reader answer the next n commands with BUSY.
func (r *Reader) Busy(n int) { r.mu.Lock(); r.busy = n; r.mu.Unlock() }

// DropReplies makes the reader execute the next n commands but lose their
// replies on the line.
func (r *Reader) DropReplies(n int) { r.mu.Lock(); r.drop = n; r.mu.Unlock() }

// CorruptMACs makes the next n replies sent under the secure channel carry
// a wrong MAC (with a good CRC), as a forged or garbled reply would.
func (r *Reader) CorruptMACs(n int) { r.mu.Lock(); r.corrupt = n; r.mu.Unlock() }

// SetSilent makes the reader stop answering (unplugged) or answer again.
func (r *Reader) SetSilent(s bool) { r.mu.Lock(); r.silent = s; r.mu.Unlock() }

// Outputs returns every OUT record received.
func (r *Reader) Outputs() []OutRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]OutRecord(nil), r.outs...)
}

// LEDs returns every LED record received.
func (r *Reader) LEDs() []osdp.LED {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]osdp.LED(nil), r.leds...)
}

// Buzzer returns every BUZ command received.
func (r *Reader) Buzzer() []osdp.Buzzer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]osdp.Buzzer(nil), r.buz...)
}

// Text returns every TEXT command received.
func (r *Reader) Text() []osdp.Text {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]osdp.Text(nil), r.text...)
}

// Secure reports whether the secure channel is up.
func (r *Reader) Secure() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.sc != nil }

// SCBK returns the reader's own key, if it has one.
func (r *Reader) SCBK() (key [16]byte, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scbk == nil {
		return key, false
	}
	return *r.scbk, true
}

// Counts returns a copy of the reader's counters.
func (r *Reader) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	c.ByCode, c.NAKs = map[byte]int{}, map[byte]int{}
	for k, v := range r.counts.ByCode {
		c.ByCode[k] = v
	}
	for k, v := range r.counts.NAKs {
		c.NAKs[k] = v
	}
	return c
}

// handle answers one command frame; nil means no reply goes out.
func (r *Reader) handle(raw []byte, at time.Time) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.silent {
		return nil
	}
	mark := raw[0] == osdp.Mark
	f, err := osdp.Decode(raw)
	if err != nil {
		if errors.Is(err, osdp.ErrCheck) {
			return r.nakPlain(osdp.Frame{Mark: mark, Seq: f.Seq, CRC: f.CRC}, osdp.NakCheck)
		}
		return nil
	}
	if f.Addr != r.addr && f.Addr != osdp.Broadcast {
		return nil
	}
	r.counts.Commands++
	r.counts.ByCode[f.Code]++
	now := at
	if r.cfg.Now != nil {
		now = r.cfg.Now()
	}
	if r.cfg.SessionTimeout > 0 && r.sc != nil && now.Sub(r.lastCmd) >= r.cfg.SessionTimeout {
		r.sc, r.pending = nil, nil
		r.counts.SCExpired++
	}
	r.lastCmd = now
	if r.cfg.ChecksumOnly && f.CRC {
		return r.nakPlain(f, osdp.NakCheck)
	}
	if r.busy > 0 {
		r.busy--
		r.counts.Busy++
		b, _ := (&osdp.Frame{Mark: mark, Addr: r.addr, Reply: true, Seq: 0, CRC: f.CRC, Code: osdp.ReplyBusy}).Encode()
		return b
	}
	// Sequence numbers.
	switch {
	case f.Seq == 0:
		r.sc, r.pending = nil, nil
	case r.lastSeq >= 0 && int(f.Seq) == r.lastSeq && f.Code == r.lastCode && r.lastReply != nil:
		r.counts.Resends++
		return r.out(r.lastReply)
	case r.lastSeq >= 0 && int(f.Seq) != next(r.lastSeq):
		return r.nakPlain(f, osdp.NakSequence)
	}
	reply := r.process(f, raw, at)
	r.lastSeq, r.lastCode, r.lastReply = int(f.Seq), f.Code, reply
	return r.out(reply)
}

func next(seq int) int {
	if seq == 0 || seq == 3 {
		return 1
	}
	return seq + 1
}

func (r *Reader) out(reply []byte) []byte {
	if r.drop > 0 {
		r.drop--
		r.counts.Dropped++
		return nil
	}
	return reply
}

// nakPlain is a plaintext NAK that does not enter the sequence cache.
func (r *Reader) nakPlain(f osdp.Frame, code byte) []byte {
	r.counts.NAKs[code]++
	b, _ := (&osdp.Frame{Mark: f.Mark, Addr: r.addr, Reply: true, Seq: f.Seq, CRC: f.CRC && !r.cfg.ChecksumOnly,
		Code: osdp.ReplyNAK, Data: []byte{code}}).Encode()
	return b
}

// process runs a command that passed the sequence check and returns the
// reply's bytes.
func (r *Reader) process(f osdp.Frame, raw []byte, at time.Time) []byte {
	rep := osdp.Frame{Mark: f.Mark, Addr: r.addr, Reply: true, Seq: f.Seq, CRC: f.CRC}
	if f.Addr == osdp.Broadcast {
		rep.Addr = osdp.Broadcast // a broadcast is answered as 0x7F
	}
	plain := func(code byte, data []byte) []byte {
		rep.Code, rep.Data = code, data
		b, _ := rep.Encode()
		return b
	}
	nak := func(code byte) []byte {
		r.counts.NAKs[code]++
		return plain(osdp.ReplyNAK, []byte{code})
	}
	data := f.Data
	switch {
	case f.Code == osdp.CmdChlng || f.Code == osdp.CmdSCrypt:
		// Handshake commands: plaintext with their own SCB.
	case r.sc != nil && (f.SCBType == osdp.SCS15 || f.SCBType == osdp.SCS17):
		d, err := r.sc.Open(raw, &f, true)
		if err != nil {
			r.counts.MACErrors++
			r.sc = nil
			return nak(osdp.NakSCCond)
		}
		data = d
	case r.sc != nil:
		r.sc = nil
		return nak(osdp.NakSCCond)
	case f.SCBType != 0:
		return nak(osdp.NakSCCond)
	}
	if r.cfg.RequireSecure && r.sc == nil && f.Code != osdp.CmdID && f.Code != osdp.CmdCap &&
		f.Code != osdp.CmdChlng && f.Code != osdp.CmdSCrypt {
		return nak(osdp.NakSCCond)
	}
	var code byte
	var out []byte
	switch f.Code {
	case osdp.CmdPoll:
		if len(r.reports) > 0 {
			code, out = r.reports[0][0], r.reports[0][1:]
			r.reports = r.reports[1:]
		} else {
			code = osdp.ReplyACK
		}
	case osdp.CmdID:
		code, out = osdp.ReplyPDID, r.cfg.ID.Bytes()
	case osdp.CmdCap:
		code, out = osdp.ReplyPDCAP, r.caps
	case osdp.CmdLStat:
		code, out = osdp.ReplyLStatR, r.lstat()
	case osdp.CmdIStat:
		code, out = osdp.ReplyIStatR, append([]byte(nil), r.inputs...)
	case osdp.CmdOStat:
		code = osdp.ReplyOStatR
		for _, o := range r.outState {
			out = append(out, b2i(o))
		}
	case osdp.CmdRStat:
		code, out = osdp.ReplyRStatR, []byte{0}
	case osdp.CmdOut:
		outs, err := osdp.ParseOut(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		for _, o := range outs {
			if int(o.Number) >= len(r.outState) {
				return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakRecord}, nak)
			}
		}
		for _, o := range outs {
			r.outs = append(r.outs, OutRecord{At: at, Output: o})
			switch o.Control {
			case osdp.OutOnAbort, osdp.OutOnAfter:
				r.outState[o.Number] = true
			case osdp.OutOffAbort, osdp.OutOffAfter:
				r.outState[o.Number] = false
			}
		}
		code = osdp.ReplyACK
	case osdp.CmdLED:
		leds, err := osdp.ParseLED(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		r.leds = append(r.leds, leds...)
		code = osdp.ReplyACK
	case osdp.CmdBuz:
		z, err := osdp.ParseBuz(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		r.buz = append(r.buz, z)
		code = osdp.ReplyACK
	case osdp.CmdText:
		t, err := osdp.ParseText(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		r.text = append(r.text, t)
		code = osdp.ReplyACK
	case osdp.CmdComSet:
		c, err := osdp.ParseComSet(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		c.Baud = uint32(r.line.baud) // the simulated line keeps its speed
		b := r.seal(rep, osdp.ReplyCom, osdp.ComSetData(c), nak)
		if c.Addr != r.addr {
			from := r.addr
			r.addr = c.Addr
			r.lastSeq, r.sc = -1, nil
			r.line.move(r, from, c.Addr)
		}
		return b
	case osdp.CmdKeySet:
		if r.sc == nil {
			return nak(osdp.NakSCCond)
		}
		k, err := osdp.ParseKeySet(data)
		if err != nil {
			return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakLength}, nak)
		}
		r.scbk, r.install = &k, false
		code = osdp.ReplyACK
	case osdp.CmdChlng:
		return r.challenge(f, rep, nak)
	case osdp.CmdSCrypt:
		if r.pending == nil || f.SCBType != osdp.SCS13 || len(f.Data) != 16 {
			r.pending = nil
			return nak(osdp.NakSCCond)
		}
		s := r.pending
		r.pending = nil
		var c [16]byte
		copy(c[:], f.Data)
		if s.VerifyCPCryptogram(c) != nil {
			return nak(osdp.NakSCCond)
		}
		rmac := s.InitialRMAC()
		rep.SCBType, rep.SCBData = osdp.SCS14, []byte{1}
		b := plain(osdp.ReplyRMACI, rmac[:])
		s.Start()
		r.sc = s
		r.counts.SCUp++
		return b
	default:
		return r.seal(rep, osdp.ReplyNAK, []byte{osdp.NakUnknown}, nak)
	}
	return r.seal(rep, code, out, nak)
}

func (r *Reader) challenge(f osdp.Frame, rep osdp.Frame, nak func(byte) []byte) []byte {
	r.sc, r.pending = nil, nil
	if !r.cfg.Secure {
		return nak(osdp.NakSCUnsupp)
	}
	if f.SCBType != osdp.SCS11 || len(f.SCBData) != 1 || len(f.Data) != 8 {
		return nak(osdp.NakSCCond)
	}
	var key [16]byte
	switch f.SCBData[0] {
	case 0:
		if !r.install {
			return nak(osdp.NakSCCond)
		}
		key = osdp.SCBKD()
	case 1:
		if r.scbk == nil {
			return nak(osdp.NakSCCond)
		}
		key = *r.scbk
	default:
		return nak(osdp.NakSCCond)
	}
	var rndA, rndB [8]byte
	copy(rndA[:], f.Data)
	if _, err := io.ReadFull(r.cfg.Rand, rndB[:]); err != nil {
		return nak(osdp.NakSCCond)
	}
	s := osdp.NewSession(key, rndA, rndB)
	r.pending = s
	var cuid [8]byte
	copy(cuid[:], r.cfg.ID.VendorOUI[:])
	binary.LittleEndian.PutUint32(cuid[4:], r.cfg.ID.Serial)
	rep.SCBType, rep.SCBData = osdp.SCS12, []byte{f.SCBData[0]}
	rep.Code, rep.Data = osdp.ReplyCCrypt, osdp.CCrypt{CUID: cuid, RndB: rndB, PDCryptogram: s.PDCryptogram()}.Bytes()
	b, _ := rep.Encode()
	return b
}

// seal encodes a reply, under the secure channel when it is up.
func (r *Reader) seal(rep osdp.Frame, code byte, data []byte, nak func(byte) []byte) []byte {
	if code == osdp.ReplyNAK && len(data) == 1 {
		r.counts.NAKs[data[0]]++
	}
	rep.Code, rep.Data = code, data
	if r.sc != nil {
		b, err := r.sc.Seal(rep, false)
		if err == nil {
			if r.corrupt > 0 {
				r.corrupt--
				checkLen := 1
				if rep.CRC {
					checkLen = 2
				}
				b[len(b)-checkLen-1] ^= 0x5A // last MAC byte
				body := b[:len(b)-checkLen]
				if b[0] == osdp.Mark {
					body = body[1:]
				}
				if rep.CRC {
					c := osdp.CRC16(body)
					b[len(b)-2], b[len(b)-1] = byte(c), byte(c>>8)
				} else {
					b[len(b)-1] = osdp.Checksum(body)
				}
			}
			return b
		}
		r.sc = nil
		return nak(osdp.NakSCCond)
	}
	b, _ := rep.Encode()
	return b
}
