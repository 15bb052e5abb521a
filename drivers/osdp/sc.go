package osdp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
)

// SCBKD returns the well-known default Secure Channel Base Key (30 31 … 3F),
// accepted by readers only in install mode.
func SCBKD() [16]byte {
	return [16]byte{0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F}
}

// Errors of the secure channel.
var (
	// ErrMAC means a frame's MAC did not verify.
	ErrMAC = errors.New("secure channel mac mismatch")
	// ErrCryptogram means the other side's cryptogram did not verify: it
	// holds another key.
	ErrCryptogram = errors.New("secure channel cryptogram mismatch (wrong key)")
	// ErrSecure is wrapped by other secure-channel errors (missing SCB,
	// bad padding).
	ErrSecure = errors.New("secure channel error")
)

// DeriveSCBK derives a reader's SCBK from a master key and its cUID:
// AES(MK, cUID ‖ ~cUID).
func DeriveSCBK(master [16]byte, cuid [8]byte) [16]byte {
	var in, out [16]byte
	copy(in[:], cuid[:])
	for i := range 8 {
		in[8+i] = ^cuid[i]
	}
	c, _ := aes.NewCipher(master[:])
	c.Encrypt(out[:], in[:])
	return out
}

// Session is one side's secure-channel state for one reader: the session
// keys and the MAC chain. The CP and the PD each hold one.
type Session struct {
	SEnc, SMAC1, SMAC2 [16]byte
	RndA, RndB         [8]byte
	// CMAC is the last command MAC, RMAC the last reply MAC (RMAC_I after
	// the handshake); each is the IV of the next MAC the other way.
	CMAC, RMAC [16]byte

	enc, mac1, mac2 cipher.Block
}

func sessionKey(scbk [16]byte, p1, p2 byte, rndA [8]byte) [16]byte {
	var in, out [16]byte
	in[0], in[1] = p1, p2
	copy(in[2:8], rndA[:6])
	c, _ := aes.NewCipher(scbk[:])
	c.Encrypt(out[:], in[:])
	return out
}

// NewSession derives the session keys from the base key and both random
// numbers (RND.A from CHLNG, RND.B from CCRYPT).
func NewSession(scbk [16]byte, rndA, rndB [8]byte) *Session {
	s := &Session{RndA: rndA, RndB: rndB}
	s.SEnc = sessionKey(scbk, 0x01, 0x82, rndA)
	s.SMAC1 = sessionKey(scbk, 0x01, 0x01, rndA)
	s.SMAC2 = sessionKey(scbk, 0x01, 0x02, rndA)
	s.enc, _ = aes.NewCipher(s.SEnc[:])
	s.mac1, _ = aes.NewCipher(s.SMAC1[:])
	s.mac2, _ = aes.NewCipher(s.SMAC2[:])
	return s
}

func (s *Session) ecb(a, b [8]byte) [16]byte {
	var in, out [16]byte
	copy(in[:], a[:])
	copy(in[8:], b[:])
	s.enc.Encrypt(out[:], in[:])
	return out
}

// PDCryptogram is the PD's proof in CCRYPT: AES(S-ENC, RND.A ‖ RND.B).
func (s *Session) PDCryptogram() [16]byte { return s.ecb(s.RndA, s.RndB) }

// CPCryptogram is the CP's proof in SCRYPT: AES(S-ENC, RND.B ‖ RND.A).
func (s *Session) CPCryptogram() [16]byte { return s.ecb(s.RndB, s.RndA) }

// InitialRMAC is RMAC_I: AES(S-MAC2, AES(S-MAC1, CP cryptogram)). It also
// starts the MAC chain (RMAC).
func (s *Session) InitialRMAC() [16]byte {
	c := s.CPCryptogram()
	var t, out [16]byte
	s.mac1.Encrypt(t[:], c[:])
	s.mac2.Encrypt(out[:], t[:])
	return out
}

// Start begins the MAC chain after a successful handshake.
func (s *Session) Start() { s.RMAC = s.InitialRMAC() }

// VerifyPDCryptogram checks CCRYPT's cryptogram (CP side).
func (s *Session) VerifyPDCryptogram(c [16]byte) error {
	want := s.PDCryptogram()
	if subtle.ConstantTimeCompare(c[:], want[:]) != 1 {
		return ErrCryptogram
	}
	return nil
}

// VerifyCPCryptogram checks SCRYPT's cryptogram (PD side).
func (s *Session) VerifyCPCryptogram(c [16]byte) error {
	want := s.CPCryptogram()
	if subtle.ConstantTimeCompare(c[:], want[:]) != 1 {
		return ErrCryptogram
	}
	return nil
}

// MAC computes the 16-byte MAC of msg (SOM through the end of the data):
// CBC with S-MAC1 over all blocks but the last and S-MAC2 over the last,
// padded with 0x80 and zeros unless a whole number of blocks, chained from
// RMAC for commands and CMAC for replies. It does not update the chain.
func (s *Session) MAC(cmd bool, msg []byte) [16]byte {
	iv := s.RMAC
	if !cmd {
		iv = s.CMAC
	}
	n := len(msg)
	padded := n
	if n%16 != 0 || n == 0 {
		padded = (n/16 + 1) * 16
	}
	buf := make([]byte, padded)
	copy(buf, msg)
	if padded != n {
		buf[n] = 0x80
	}
	if padded > 16 {
		cipher.NewCBCEncrypter(s.mac1, iv[:]).CryptBlocks(buf[:padded-16], buf[:padded-16])
		copy(iv[:], buf[padded-32:padded-16])
	}
	var out [16]byte
	cipher.NewCBCEncrypter(s.mac2, iv[:]).CryptBlocks(out[:], buf[padded-16:])
	return out
}

func (s *Session) chain(cmd bool, m [16]byte) {
	if cmd {
		s.CMAC = m
	} else {
		s.RMAC = m
	}
}

// dataIV is ~RMAC for commands and ~CMAC for replies.
func (s *Session) dataIV(cmd bool) []byte {
	iv := s.RMAC
	if !cmd {
		iv = s.CMAC
	}
	for i := range iv {
		iv[i] = ^iv[i]
	}
	return iv[:]
}

// Encrypt pads data with 0x80 and zeros and encrypts it with S-ENC in
// CBC mode.
func (s *Session) Encrypt(cmd bool, data []byte) []byte {
	n := (len(data)/16 + 1) * 16
	buf := make([]byte, n)
	copy(buf, data)
	buf[len(data)] = 0x80
	cipher.NewCBCEncrypter(s.enc, s.dataIV(cmd)).CryptBlocks(buf, buf)
	return buf
}

// Decrypt undoes Encrypt.
func (s *Session) Decrypt(cmd bool, data []byte) ([]byte, error) {
	if len(data) == 0 || len(data)%16 != 0 {
		return nil, fmt.Errorf("encrypted data of %d bytes: want a non-empty multiple of 16: %w", len(data), ErrSecure)
	}
	buf := make([]byte, len(data))
	cipher.NewCBCDecrypter(s.enc, s.dataIV(cmd)).CryptBlocks(buf, data)
	i := len(buf) - 1
	for i >= 0 && buf[i] == 0 {
		i--
	}
	if i < 0 || buf[i] != 0x80 || len(buf)-i > 16 {
		return nil, fmt.Errorf("decrypted data has no 0x80 padding marker in its last block: %w", ErrSecure)
	}
	return buf[:i], nil
}

// Seal encodes f under the secure channel: it sets the SCB (MAC only, or
// MAC and encrypted data when f has data), encrypts the data, computes the
// MAC, advances the chain and returns the frame's bytes. cmd tells a
// command (CP) from a reply (PD).
func (s *Session) Seal(f Frame, cmd bool) ([]byte, error) {
	f.SCBData = nil
	switch {
	case cmd && len(f.Data) == 0:
		f.SCBType = SCS15
	case cmd:
		f.SCBType = SCS17
	case len(f.Data) == 0:
		f.SCBType = SCS16
	default:
		f.SCBType = SCS18
	}
	if len(f.Data) > 0 {
		f.Data = s.Encrypt(cmd, f.Data)
	}
	body, som, err := f.appendBody(nil)
	if err != nil {
		return nil, err
	}
	m := s.MAC(cmd, body[som:])
	s.chain(cmd, m)
	body = append(body, m[:macLen]...)
	return f.appendCheck(body, som), nil
}

// Open verifies the MAC of a received frame (raw is its bytes, f what
// Decode made of them), advances the chain and returns the plaintext data.
// cmd is true when the frame is a command (the PD opens commands).
func (s *Session) Open(raw []byte, f *Frame, cmd bool) ([]byte, error) {
	wantSCB := byte(SCS15)
	if !cmd {
		wantSCB = SCS16
	}
	if f.SCBType != wantSCB && f.SCBType != wantSCB+2 {
		return nil, fmt.Errorf("scb type %#02x: want %#02x or %#02x under the secure channel: %w", f.SCBType, wantSCB, wantSCB+2, ErrSecure)
	}
	m := s.MAC(cmd, macSpan(raw, f))
	if subtle.ConstantTimeCompare(m[:macLen], f.MAC) != 1 {
		return nil, ErrMAC
	}
	data := f.Data
	if f.SCBType == wantSCB+2 {
		var err error
		if data, err = s.Decrypt(cmd, f.Data); err != nil {
			return nil, err
		}
	} else {
		data = append([]byte(nil), data...)
	}
	s.chain(cmd, m)
	return data, nil
}
