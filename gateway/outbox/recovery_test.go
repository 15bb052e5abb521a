package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/luling-edge/luling/payload"
)

// fiveMessages writes telemetry messages 1..5, one per Append, and returns
// the path of their segment and each entry's frame offset.
func fiveMessages(t *testing.T, opts Options) (string, []entry) {
	t.Helper()
	o := mustOpen(t, opts)
	for i := range 5 {
		appendOne(t, o, payload.Telemetry, bay("bay-9", i))
	}
	ents := slices.Clone(o.logs[0].segs[0].entries)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	paths := segPath(t, opts.Dir, payload.Telemetry)
	if len(paths) != 1 || len(ents) != 5 {
		t.Fatalf("want one segment with 5 entries, have %v and %d", paths, len(ents))
	}
	return paths[0], ents
}

func TestRecoveryTruncatesDamagedTail(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, ents []entry)
		keep   int // messages that must survive
	}{
		{"cut mid-entry", func(t *testing.T, path string, ents []entry) {
			truncate(t, path, int64(ents[4].off)+int64(frameOverhead)+10)
		}, 4},
		{"cut inside the frame header", func(t *testing.T, path string, ents []entry) {
			truncate(t, path, int64(ents[4].off)+3)
		}, 4},
		{"flipped body byte in the last entry", func(t *testing.T, path string, ents []entry) {
			flip(t, path, int64(ents[4].off)+frameOverhead+20)
		}, 4},
		{"flipped length of the last entry", func(t *testing.T, path string, ents []entry) {
			flip(t, path, int64(ents[4].off)+1)
		}, 4},
		{"zeros appended (unwritten blocks after power loss)", func(t *testing.T, path string, ents []entry) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 4096))
			f.Close()
		}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var lb logBuf
			opts := testOptions(dir, &lb)
			path, ents := fiveMessages(t, opts)
			tc.damage(t, path, ents)
			before, _ := os.Stat(path)

			o := mustOpen(t, opts)
			msgs := pendingAll(t, o)
			if got := seqsOf(msgs); !slices.Equal(got, seqRangeList(1, uint64(tc.keep))) {
				t.Fatalf("after recovery seqs %v, want 1..%d", got, tc.keep)
			}
			for _, m := range msgs {
				decode(t, m)
			}
			st := o.Stats()
			wantCut := before.Size() - int64(segHeaderSize)
			for _, e := range ents[:tc.keep] {
				wantCut -= e.frameLen()
			}
			if st.TruncatedBytes != wantCut {
				t.Errorf("TruncatedBytes %d, want %d", st.TruncatedBytes, wantCut)
			}
			if !strings.Contains(lb.String(), "torn or corrupt tail") {
				t.Errorf("recovery did not log the damage:\n%s", lb.String())
			}
			// Message 5 had been committed (the state file says so): losing
			// it is counted and declared, never silent.
			var wantLoss []payload.Loss
			if tc.keep == 4 {
				wantLoss = []payload.Loss{{SeqRange: payload.SeqRange{First: 5, Last: 5}, Reason: payload.LossMissing}}
			}
			if got := o.Losses(); !slices.Equal(got, wantLoss) {
				t.Errorf("losses %v, want %v", got, wantLoss)
			}
			if got := st.Dropped(); got != (Counts{int64(5 - tc.keep), int64(5 - tc.keep)}) {
				t.Errorf("Dropped() %+v, want %d messages", got, 5-tc.keep)
			}
			// Appending after recovery works, and the file was cut so a
			// restart finds the same thing plus the new message.
			appendOne(t, o, payload.Telemetry, bay("bay-9", 50))
			o.Close()
			o = mustOpen(t, opts)
			defer o.Close()
			msgs = pendingAll(t, o)
			if len(msgs) != tc.keep+1 || o.Stats().TruncatedBytes != 0 {
				t.Fatalf("second reopen: %d messages (want %d), truncated %d (want 0)", len(msgs), tc.keep+1, o.Stats().TruncatedBytes)
			}
			if msgs[tc.keep].Seq <= uint64(tc.keep) {
				t.Fatalf("new message reused seq %d", msgs[tc.keep].Seq)
			}
		})
	}
}

func TestRecoveryRemovesSegmentWithoutEntries(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	path, ents := fiveMessages(t, opts)
	// A segment created just before a crash: header torn.
	bad := dir + "/" + segmentName(payload.Telemetry, 6)
	if err := os.WriteFile(bad, []byte(segMagic[:5]), 0o600); err != nil {
		t.Fatal(err)
	}
	// A segment holding only an entry that is cut short.
	b, _ := os.ReadFile(path)
	torn := append(slices.Clone(b[:segHeaderSize]), b[ents[0].off:ents[0].off+30]...)
	tornPath := dir + "/" + segmentName(payload.Telemetry, 7)
	os.WriteFile(tornPath, torn, 0o600)
	o := mustOpen(t, opts)
	defer o.Close()
	if got := seqsOf(pendingAll(t, o)); !slices.Equal(got, seqRangeList(1, 5)) {
		t.Fatalf("seqs %v, want 1..5", got)
	}
	for _, p := range []string{bad, tornPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: segment without an intact entry not removed (%v)", p, err)
		}
	}
}

func TestReadBackDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := testOptions(dir, &lb)
	o := mustOpen(t, opts)
	defer o.Close()
	for i := range 3 {
		appendOne(t, o, payload.Telemetry, bay("bay-10", i))
	}
	// Damage the middle message on disk behind the outbox's back.
	path := segPath(t, dir, payload.Telemetry)[0]
	flip(t, path, int64(o.logs[0].segs[0].entries[1].off)+frameOverhead+7)
	msgs, err := o.Pending(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(msgs); !slices.Equal(got, []uint64{1, 3}) {
		t.Fatalf("seqs %v, want [1 3] (2 is corrupt)", got)
	}
	if st := o.Stats(); st.DroppedCorrupt != (Counts{1, 1}) || st.Dropped().Messages != 1 {
		t.Fatalf("DroppedCorrupt %+v, want 1 message, 1 record", st.DroppedCorrupt)
	}
	want := []payload.Loss{{SeqRange: payload.SeqRange{First: 2, Last: 2}, Reason: payload.LossCorrupt}}
	if got := o.Losses(); !slices.Equal(got, want) {
		t.Fatalf("losses %v, want %v", got, want)
	}
	if !strings.Contains(lb.String(), "corrupt") {
		t.Fatal("corruption not logged")
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzScanSegment feeds arbitrary bytes to the recovery scan: it must not
// panic, and every entry it returns must be intact at the offset it names.
func FuzzScanSegment(f *testing.F) {
	var seg []byte
	seg = appendSegHeader(seg, payload.Telemetry)
	for i := range 3 {
		start := len(seg)
		seg = beginFrame(seg)
		seg = append(seg, `{"v":1,"records":[`+strings.Repeat("x", i*7)+`]}`...)
		finishFrame(seg, start, uint64(i+1), payload.Telemetry, i+1)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-5])
	f.Add(seg[:segHeaderSize])
	f.Add(seg[:segHeaderSize+3])
	f.Add([]byte{})
	f.Add(append(slices.Clone(seg), make([]byte, 64)...))
	bad := slices.Clone(seg)
	bad[segHeaderSize+frameOverhead+2] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf []byte
		ents, end, dmg, err := scanSegment(bytes.NewReader(data), payload.Telemetry, &buf)
		if end > int64(len(data)) {
			t.Fatalf("end %d beyond %d bytes", end, len(data))
		}
		if err == nil && end != int64(len(data)) {
			t.Fatalf("clean scan ended at %d of %d", end, len(data))
		}
		var last uint64
		off := int64(segHeaderSize)
		for _, e := range ents {
			// Entries are adjacent, except across a damaged region the scan
			// reported.
			for len(dmg) > 0 && dmg[0].off == off {
				off += dmg[0].n
				dmg = dmg[1:]
			}
			if int64(e.off) != off {
				t.Fatalf("entry %d at offset %d, want %d (entries must be adjacent)", e.seq, e.off, off)
			}
			fr, n, derr := decodeFrame(data[e.off:])
			if derr != nil || int64(n) != e.frameLen() || fr.seq != e.seq || fr.seq <= last || fr.kind != payload.Telemetry {
				t.Fatalf("scan returned entry %+v that does not decode cleanly: %v", e, derr)
			}
			last = fr.seq
			off += int64(n)
		}
		if len(dmg) > 0 {
			t.Fatalf("damage %+v reported after the last entry", dmg)
		}
		if len(ents) > 0 && off != end {
			t.Fatalf("end %d, want %d (after the last entry)", end, off)
		}
	})
}

// FuzzDecodeState: the state decoder never panics, and what it accepts
// encodes back to the same bytes.
func FuzzDecodeState(f *testing.F) {
	f.Add((&state{lastSeq: 9, reserved: 64, ackedThrough: 3, ranges: []seqRange{{5, 6}, {8, 9}},
		losses: []payload.Loss{{SeqRange: payload.SeqRange{First: 4, Last: 4}, Reason: payload.LossCorrupt}, {SeqRange: payload.SeqRange{First: 10, Last: 64}, Reason: payload.LossUnused}}}).encode())
	f.Add((&state{}).encode())
	f.Add([]byte(stateMagic))
	// A version 1 file: no reservation, no losses.
	v1 := []byte(stateMagicV1)
	v1 = binary.LittleEndian.AppendUint64(v1, 9)
	v1 = binary.LittleEndian.AppendUint64(v1, 3)
	v1 = binary.LittleEndian.AppendUint32(v1, 1)
	v1 = binary.LittleEndian.AppendUint64(v1, 5)
	v1 = binary.LittleEndian.AppendUint64(v1, 6)
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1, castagnoli))
	f.Add(v1)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeState(data)
		if err != nil {
			return
		}
		enc := s.encode()
		if string(data[:8]) == stateMagic && !bytes.Equal(enc, data) {
			t.Fatalf("decoded state re-encodes differently")
		}
		s2, err := decodeState(enc)
		if err != nil || !bytes.Equal(s2.encode(), enc) {
			t.Fatalf("re-encoded state does not decode to itself: %v", err)
		}
	})
}
