package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The state file records what the segments cannot: which messages the
// broker acknowledged, and the highest sequence number ever assigned (so the
// counter keeps rising after every segment was deleted). Layout,
// little-endian:
//
//	"LULOBST1" | lastSeq u64 | ackedThrough u64 | n u32 | n × (lo u64, hi u64) | crc32c u32
//
// Every message with seq <= ackedThrough is acknowledged or gone; a range
// [lo, hi] says every stored message with lo <= seq <= hi is acknowledged.
// Sequence numbers are never reused, so a range may span seqs that no longer
// exist. It is replaced atomically (temp file, fsync, rename, fsync of the
// folder), so a reader sees the old or the new state, never a mix.
const (
	stateMagic     = "LULOBST1"
	stateName      = "state"
	stateTemp      = "state.tmp"
	maxStateRanges = 16384
)

type seqRange struct{ lo, hi uint64 }

type state struct {
	lastSeq      uint64
	ackedThrough uint64
	ranges       []seqRange
}

func (s *state) acked(seq uint64) bool {
	if seq <= s.ackedThrough {
		return true
	}
	lo, hi := 0, len(s.ranges)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case seq < s.ranges[m].lo:
			hi = m
		case seq > s.ranges[m].hi:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

func (s *state) encode() []byte {
	b := make([]byte, 0, 8+8+8+4+16*len(s.ranges)+4)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint64(b, s.lastSeq)
	b = binary.LittleEndian.AppendUint64(b, s.ackedThrough)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.ranges)))
	for _, r := range s.ranges {
		b = binary.LittleEndian.AppendUint64(b, r.lo)
		b = binary.LittleEndian.AppendUint64(b, r.hi)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errState = errors.New("bad state file")

// decodeState parses a state file; errors wrap errState and say what was
// wrong at which offset.
func decodeState(b []byte) (state, error) {
	const fixed = 8 + 8 + 8 + 4
	if len(b) < fixed+4 {
		return state{}, fmt.Errorf("%w: %d bytes, want at least %d", errState, len(b), fixed+4)
	}
	if string(b[:8]) != stateMagic {
		return state{}, fmt.Errorf("%w: magic %q at offset 0, want %q", errState, b[:8], stateMagic)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return state{}, fmt.Errorf("%w: checksum mismatch", errState)
	}
	s := state{
		lastSeq:      binary.LittleEndian.Uint64(b[8:]),
		ackedThrough: binary.LittleEndian.Uint64(b[16:]),
	}
	n := binary.LittleEndian.Uint32(b[24:])
	if n > maxStateRanges || int(n)*16 != len(body)-fixed {
		return state{}, fmt.Errorf("%w: %d ranges in %d bytes (at most %d ranges of 16 bytes)", errState, n, len(body)-fixed, maxStateRanges)
	}
	if s.ackedThrough > s.lastSeq {
		return state{}, fmt.Errorf("%w: acknowledged through %d, beyond the last sequence number %d", errState, s.ackedThrough, s.lastSeq)
	}
	prev := s.ackedThrough
	for i := range int(n) {
		off := fixed + 16*i
		r := seqRange{binary.LittleEndian.Uint64(b[off:]), binary.LittleEndian.Uint64(b[off+8:])}
		if r.lo <= prev || r.hi < r.lo || r.hi > s.lastSeq {
			return state{}, fmt.Errorf("%w: range %d [%d, %d] at offset %d is not ascending within (%d, %d]", errState, i, r.lo, r.hi, off, prev, s.lastSeq)
		}
		s.ranges = append(s.ranges, r)
		prev = r.hi
	}
	return s, nil
}

// readState loads the state file; a missing file is an empty state.
func readState(dir string) (state, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	s, err := decodeState(b)
	return s, true, err
}

// writeState replaces the state file atomically. It returns the number of
// fsyncs done.
func writeState(dir string, d *os.File, s *state) (int, error) {
	tmp := filepath.Join(dir, stateTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(s.encode()); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 1, err
	}
	if err := f.Close(); err != nil {
		return 1, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		return 1, err
	}
	return 2, d.Sync()
}
