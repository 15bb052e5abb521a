package outbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/payload"
)

// Segment file layout (all integers little-endian):
//
//	header  "LULINGOB" | version u8 | kind u8 | reserved u16 (0) | crc32c u32 of the 12 bytes before
//	entry   length u32 | crc32c u32 | seq u64 | kind u8 | records u32 | body
//
// length counts seq, kind, records and body (entryMeta + len(body)); the
// entry CRC covers the length field and everything after the CRC field, so a
// flipped bit in the length is caught like one in the body.
const (
	segMagic      = "LULINGOB"
	segVersion    = 1
	segHeaderSize = 16
	frameHeader   = 8  // length + crc
	entryMeta     = 13 // seq + kind + records
	frameOverhead = frameHeader + entryMeta
	maxEntryLen   = entryMeta + payload.MaxBodyBytes
	segSuffix     = ".seg"
)

// castagnoli is the CRC-32C table; read-only after package initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Reasons a scan stops before the end of a segment. Recovery truncates the
// segment there; the fuzz test checks that nothing before it is wrong.
var (
	errTorn       = errors.New("entry cut short (torn write)")
	errChecksum   = errors.New("checksum mismatch")
	errBadLength  = errors.New("impossible entry length")
	errBadEntry   = errors.New("entry fields out of range")
	errBadHeader  = errors.New("bad segment header")
	errOutOfOrder = errors.New("sequence number not above the previous entry")
)

// entry is the in-memory index of one stored message: where its frame sits
// in its segment file. 24 bytes per message; bodies stay on disk.
type entry struct {
	seq   uint64
	off   uint32 // frame start in the segment file
	size  uint32 // body length
	recs  uint32
	acked bool
	sent  bool // the broker acknowledged it; kept until acked (Confirm)
}

func (e *entry) frameLen() int64 { return int64(e.size) + frameOverhead }

func appendSegHeader(dst []byte, kind payload.Kind) []byte {
	start := len(dst)
	dst = append(dst, segMagic...)
	dst = append(dst, segVersion, byte(kind), 0, 0)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

func checkSegHeader(h []byte, kind payload.Kind) error {
	if len(h) < segHeaderSize {
		return fmt.Errorf("%w: %d bytes, want %d", errBadHeader, len(h), segHeaderSize)
	}
	if string(h[:8]) != segMagic {
		return fmt.Errorf("%w: magic %q, want %q", errBadHeader, h[:8], segMagic)
	}
	if crc32.Checksum(h[:12], castagnoli) != binary.LittleEndian.Uint32(h[12:16]) {
		return fmt.Errorf("%w: header checksum mismatch", errBadHeader)
	}
	if h[8] != segVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", errBadHeader, h[8], segVersion)
	}
	if payload.Kind(h[9]) != kind {
		return fmt.Errorf("%w: kind %s in a %s segment", errBadHeader, payload.Kind(h[9]), kind)
	}
	return nil
}

// beginFrame reserves the frame header; the body is appended after it and
// finishFrame fills the header in.
func beginFrame(dst []byte) []byte {
	return append(dst, make([]byte, frameOverhead)...)
}

// finishFrame completes the frame starting at dst[start:].
func finishFrame(dst []byte, start int, seq uint64, kind payload.Kind, recs int) {
	f := dst[start:]
	binary.LittleEndian.PutUint32(f[0:], uint32(len(f)-frameHeader))
	binary.LittleEndian.PutUint64(f[8:], seq)
	f[16] = byte(kind)
	binary.LittleEndian.PutUint32(f[17:], uint32(recs))
	crc := crc32.Update(0, castagnoli, f[0:4])
	crc = crc32.Update(crc, castagnoli, f[8:])
	binary.LittleEndian.PutUint32(f[4:], crc)
}

// frame is one decoded entry.
type frame struct {
	seq  uint64
	kind payload.Kind
	recs uint32
	body []byte
}

// decodeFrame decodes the entry at the start of b. It returns errTorn when b
// ends before the entry does.
func decodeFrame(b []byte) (frame, int, error) {
	if len(b) < frameHeader {
		return frame{}, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if n < entryMeta || n > maxEntryLen {
		return frame{}, 0, fmt.Errorf("%w: %d (want %d to %d)", errBadLength, n, entryMeta, maxEntryLen)
	}
	total := frameHeader + int(n)
	if len(b) < total {
		return frame{}, 0, errTorn
	}
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, b[8:total])
	if crc != binary.LittleEndian.Uint32(b[4:8]) {
		return frame{}, 0, errChecksum
	}
	fr := frame{
		seq:  binary.LittleEndian.Uint64(b[8:16]),
		kind: payload.Kind(b[16]),
		recs: binary.LittleEndian.Uint32(b[17:21]),
		body: b[frameOverhead:total],
	}
	if fr.seq == 0 || fr.recs == 0 || len(fr.body) == 0 || (fr.kind != payload.Telemetry && fr.kind != payload.Event) {
		return frame{}, 0, fmt.Errorf("%w: seq %d, kind %d, %d records, %d body bytes", errBadEntry, fr.seq, fr.kind, fr.recs, len(fr.body))
	}
	return fr, total, nil
}

// scanError says where and why a scan stopped early.
type scanError struct {
	off int64
	err error
}

func (e *scanError) Error() string { return fmt.Sprintf("at offset %d: %v", e.off, e.err) }
func (e *scanError) Unwrap() error { return e.err }

// damage is a region inside a segment that holds no intact entry but is
// followed by one: a damaged entry (media failure) that the scan stepped
// over.
type damage struct {
	off, n int64
	err    error
}

// scanSegment reads a segment of the given kind from r and indexes every
// complete, intact entry. A damaged entry followed by intact ones is
// stepped over: the scan looks for the next offset where an entry of this
// kind with a higher sequence number passes its checksum (the CRC covers
// the length, so a false match is a 1 in 2^32 event on top of the length,
// kind and order checks) and reports the region as damage. It returns the
// entries, the offset just past the last good one (where recovery
// truncates a torn tail), the damage, and, when the file ends in bytes
// that hold no intact entry, a *scanError saying why. The whole file is
// read into buf (scratch space reused between calls); bodies are not kept.
func scanSegment(r io.Reader, kind payload.Kind, buf *[]byte) ([]entry, int64, []damage, error) {
	b := bytes.NewBuffer((*buf)[:0])
	if _, err := b.ReadFrom(r); err != nil {
		return nil, 0, nil, err
	}
	data := b.Bytes()
	*buf = data
	if len(data) < segHeaderSize {
		if len(data) == 0 {
			return nil, 0, nil, &scanError{0, fmt.Errorf("%w: empty file", errBadHeader)}
		}
		return nil, 0, nil, &scanError{0, fmt.Errorf("%w: %d bytes, want %d", errBadHeader, len(data), segHeaderSize)}
	}
	if err := checkSegHeader(data[:segHeaderSize], kind); err != nil {
		return nil, 0, nil, &scanError{0, err}
	}
	var entries []entry
	var dmg []damage
	var last uint64
	p := segHeaderSize
	for p < len(data) {
		fr, n, err := nextFrame(data[p:], kind, last)
		if err == nil && int64(p+n) > 1<<32-1 {
			err = fmt.Errorf("%w: segment larger than 4 GiB", errBadLength)
			return entries, int64(p), dmg, &scanError{int64(p), err}
		}
		if err != nil {
			q := resync(data, p+1, kind, last)
			if q < 0 {
				return entries, int64(p), dmg, &scanError{int64(p), err}
			}
			dmg = append(dmg, damage{off: int64(p), n: int64(q - p), err: err})
			p = q
			continue
		}
		last = fr.seq
		entries = append(entries, entry{seq: fr.seq, off: uint32(p), size: uint32(len(fr.body)), recs: fr.recs})
		p += n
	}
	return entries, int64(p), dmg, nil
}

// nextFrame decodes the entry at the start of b and checks that it belongs
// to a segment of kind after seq last.
func nextFrame(b []byte, kind payload.Kind, last uint64) (frame, int, error) {
	fr, n, err := decodeFrame(b)
	switch {
	case err != nil:
		return frame{}, 0, err
	case fr.kind != kind:
		return frame{}, 0, fmt.Errorf("%w: %s entry in a %s segment", errBadEntry, fr.kind, kind)
	case fr.seq <= last:
		return frame{}, 0, fmt.Errorf("%w: %d after %d", errOutOfOrder, fr.seq, last)
	}
	return fr, n, nil
}

// resync returns the first offset at or after from where an intact entry
// of kind with a seq above last starts, or -1.
func resync(data []byte, from int, kind payload.Kind, last uint64) int {
	for q := from; q+frameOverhead <= len(data); q++ {
		n := binary.LittleEndian.Uint32(data[q:])
		if n < entryMeta || n > maxEntryLen || q+frameHeader+int(n) > len(data) ||
			payload.Kind(data[q+16]) != kind || binary.LittleEndian.Uint64(data[q+8:]) <= last {
			continue
		}
		if _, _, err := nextFrame(data[q:], kind, last); err == nil {
			return q
		}
	}
	return -1
}

// segmentName is "<kind>-<first seq, 20 digits>.seg", so names sort by
// sequence number.
func segmentName(kind payload.Kind, first uint64) string {
	return fmt.Sprintf("%s-%020d%s", kind, first, segSuffix)
}

// parseSegmentName is the inverse of segmentName; ok is false for any other
// file name.
func parseSegmentName(name string) (kind payload.Kind, first uint64, ok bool) {
	base, found := strings.CutSuffix(name, segSuffix)
	if !found {
		return 0, 0, false
	}
	k, num, found := strings.Cut(base, "-")
	if !found || len(num) != 20 {
		return 0, 0, false
	}
	kind, err := payload.ParseKind(k)
	if err != nil {
		return 0, 0, false
	}
	first, err = strconv.ParseUint(num, 10, 64)
	if err != nil || first == 0 {
		return 0, 0, false
	}
	return kind, first, true
}
