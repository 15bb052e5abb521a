package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/luling-edge/luling/payload"
)

// The state file records what the segments cannot: which messages the
// broker acknowledged, the sequence numbers given up for good (losses, kept
// until the cloud confirmed them), and the high-water mark of the counter
// (so it never goes back, even after every segment was deleted or the last
// one was truncated). Layout, little-endian:
//
//	"LULOBST2" | lastSeq u64 | reserved u64 | ackedThrough u64
//	| n u32 | n × (lo u64, hi u64) | m u32 | m × (first u64, last u64, reason u8) | crc32c u32
//
// lastSeq is the highest sequence number committed when the file was
// written; reserved (>= lastSeq) is the highest one the outbox may have
// assigned before it writes the file again: the committer reserves numbers
// in blocks (reserveBlock) and writes the file before it uses a number
// beyond the reservation. After an unclean stop the counter resumes above
// reserved. Every message with seq <= ackedThrough is acknowledged or gone;
// a range [lo, hi] says every stored message with lo <= seq <= hi is
// acknowledged. Sequence numbers are never reused, so a range may span
// seqs that no longer exist. It is replaced atomically (temp file, fsync,
// rename, fsync of the folder), so a reader sees the old or the new state,
// never a mix. Version 1 files ("LULOBST1": no reserved, no losses) are
// still read.
const (
	stateMagic     = "LULOBST2"
	stateMagicV1   = "LULOBST1"
	stateName      = "state"
	stateTemp      = "state.tmp"
	maxStateRanges = 16384
	maxStateLosses = 16384
)

type seqRange struct{ lo, hi uint64 }

type state struct {
	lastSeq      uint64
	reserved     uint64
	ackedThrough uint64
	ranges       []seqRange
	losses       []payload.Loss
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

// Loss reasons as stored in the state file.
var lossCodes = []payload.LossReason{1: payload.LossFull, 2: payload.LossCorrupt, 3: payload.LossMissing, 4: payload.LossUnused}

func lossCode(r payload.LossReason) byte {
	for i, x := range lossCodes {
		if i > 0 && x == r {
			return byte(i)
		}
	}
	return 0
}

func (s *state) encode() []byte {
	b := make([]byte, 0, 8+8+8+8+4+16*len(s.ranges)+4+17*len(s.losses)+4)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint64(b, s.lastSeq)
	b = binary.LittleEndian.AppendUint64(b, s.reserved)
	b = binary.LittleEndian.AppendUint64(b, s.ackedThrough)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.ranges)))
	for _, r := range s.ranges {
		b = binary.LittleEndian.AppendUint64(b, r.lo)
		b = binary.LittleEndian.AppendUint64(b, r.hi)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.losses)))
	for _, l := range s.losses {
		b = binary.LittleEndian.AppendUint64(b, l.First)
		b = binary.LittleEndian.AppendUint64(b, l.Last)
		b = append(b, lossCode(l.Reason))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errState = errors.New("bad state file")

// decodeState parses a state file; errors wrap errState and say what was
// wrong at which offset.
func decodeState(b []byte) (state, error) {
	if len(b) < 8+8+8+4+4 {
		return state{}, fmt.Errorf("%w: %d bytes, want at least %d", errState, len(b), 8+8+8+4+4)
	}
	v1 := string(b[:8]) == stateMagicV1
	if !v1 && string(b[:8]) != stateMagic {
		return state{}, fmt.Errorf("%w: magic %q at offset 0, want %q", errState, b[:8], stateMagic)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return state{}, fmt.Errorf("%w: checksum mismatch", errState)
	}
	var s state
	off := 8
	u64 := func() uint64 { v := binary.LittleEndian.Uint64(body[off:]); off += 8; return v }
	u32 := func() uint32 { v := binary.LittleEndian.Uint32(body[off:]); off += 4; return v }
	need := func(n int, what string) error {
		if len(body)-off < n {
			return fmt.Errorf("%w: %s at offset %d: %d bytes left, want %d", errState, what, off, len(body)-off, n)
		}
		return nil
	}
	s.lastSeq = u64()
	s.reserved = s.lastSeq
	if !v1 {
		if err := need(8+8+4, "header"); err != nil {
			return state{}, err
		}
		s.reserved = u64()
	}
	s.ackedThrough = u64()
	n := u32()
	if s.reserved < s.lastSeq {
		return state{}, fmt.Errorf("%w: reserved %d below the last sequence number %d", errState, s.reserved, s.lastSeq)
	}
	if s.ackedThrough > s.lastSeq {
		return state{}, fmt.Errorf("%w: acknowledged through %d, beyond the last sequence number %d", errState, s.ackedThrough, s.lastSeq)
	}
	if n > maxStateRanges {
		return state{}, fmt.Errorf("%w: %d ranges, at most %d", errState, n, maxStateRanges)
	}
	if err := need(16*int(n), "ranges"); err != nil {
		return state{}, err
	}
	prev := s.ackedThrough
	for i := range int(n) {
		at := off
		r := seqRange{u64(), u64()}
		if r.lo <= prev || r.hi < r.lo || r.hi > s.lastSeq {
			return state{}, fmt.Errorf("%w: range %d [%d, %d] at offset %d is not ascending within (%d, %d]", errState, i, r.lo, r.hi, at, prev, s.lastSeq)
		}
		s.ranges = append(s.ranges, r)
		prev = r.hi
	}
	if !v1 {
		if err := need(4, "loss count"); err != nil {
			return state{}, err
		}
		m := u32()
		if m > maxStateLosses {
			return state{}, fmt.Errorf("%w: %d losses, at most %d", errState, m, maxStateLosses)
		}
		if err := need(17*int(m), "losses"); err != nil {
			return state{}, err
		}
		prev = 0
		for i := range int(m) {
			at := off
			l := payload.Loss{SeqRange: payload.SeqRange{First: u64(), Last: u64()}}
			c := body[off]
			off++
			if int(c) >= len(lossCodes) || c == 0 {
				return state{}, fmt.Errorf("%w: loss %d at offset %d: unknown reason code %d", errState, i, at, c)
			}
			l.Reason = lossCodes[c]
			if l.First <= prev || l.Last < l.First || l.Last > s.reserved {
				return state{}, fmt.Errorf("%w: loss %d [%d, %d] at offset %d is not ascending within (%d, %d]", errState, i, l.First, l.Last, at, prev, s.reserved)
			}
			s.losses = append(s.losses, l)
			prev = l.Last
		}
	}
	if off != len(body) {
		return state{}, fmt.Errorf("%w: %d bytes after the last field at offset %d", errState, len(body)-off, off)
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
	n, err := writeSynced(tmp, s.encode())
	if err != nil {
		return n, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		return n, err
	}
	return n + 1, d.Sync()
}

// writeSynced writes b to a new or truncated file at path and fsyncs it.
// It returns the number of fsyncs done.
func writeSynced(path string, b []byte) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 1, err
	}
	return 1, f.Close()
}
