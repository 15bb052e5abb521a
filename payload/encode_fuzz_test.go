package payload

import (
	"bytes"
	"maps"
	"slices"
	"testing"
	"time"
)

// refRecord is AppendRecord written the plain way (keys sorted with
// sort.Strings, every string through the escaping loop, map lookups): the
// reference the allocation-free encoder must agree with byte for byte.
func refRecord(r *Record) []byte {
	str := func(dst []byte, s string) []byte {
		dst = append(dst, '"')
		dst = appendEscaped(dst, s)
		return append(dst, '"')
	}
	dst := append([]byte(`{"m":`), str(nil, r.Measurement)...)
	dst = append(dst, `,"t":`...)
	dst = appendTime(dst, r.Time)
	if len(r.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		for i, k := range slices.Sorted(maps.Keys(r.Tags)) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(str(dst, k), ':')
			dst = str(dst, r.Tags[k])
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"fields":{`...)
	for i, k := range slices.Sorted(maps.Keys(r.Fields)) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(str(dst, k), ':')
		if v := r.Fields[k]; v.Type() == TypeString {
			dst = str(dst, v.Str())
		} else {
			dst = appendValue(dst, v)
		}
	}
	return append(dst, "}}"...)
}

// The encoder (plain strings copied whole, keys sorted in a caller's
// array) writes exactly what the straightforward encoding writes, for any
// strings and any number of tags (beyond the array too).
func FuzzAppendRecord(f *testing.F) {
	f.Add("parking_bay", "device", "bay-017", "lot", "a", "state", "open", 120.5, 9)
	f.Add("door", "door", "lobby \"east\"", "reader", "<in>&", "msg", "line\nbreak\u2028\xff", -0.0, 0)
	f.Add("a", "z", "é", "y", "\x00\x1f", "b", "", 1e21, 12)
	f.Fuzz(func(t *testing.T, m, k1, v1, k2, v2, fk, fs string, fv float64, extra int) {
		r := Record{Measurement: m, Time: time.Unix(1_700_000_000, int64(extra)*1_000_003).UTC(),
			Tags:   map[string]string{k1: v1, k2: v2},
			Fields: map[string]Value{fk: String(fs), fk + "_f": Float(fv), "n": Int(int64(extra))}}
		for i := range extra % 16 { // past the 8 entries kept on the stack
			r.Tags[string(rune('a'+i))+k1] = v2
		}
		got, err := AppendRecord(nil, &r)
		if m == "" || !Float(fv).Valid() {
			if err == nil {
				t.Fatalf("no error for measurement %q, float %v", m, fv)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := refRecord(&r); !bytes.Equal(got, want) {
			t.Fatalf("encoded\n%s\nwant\n%s", got, want)
		}
	})
}

// A record of a few tags and fields encodes without allocating.
func TestAppendRecordDoesNotAllocate(t *testing.T) {
	r := Record{Measurement: "parking_bay", Time: time.Unix(1_700_000_000, 5),
		Tags:   map[string]string{"device": "bay-017", "lot": "a", "zone": "z1", "bay": "017"},
		Fields: map[string]Value{"occupied": Bool(true), "distance_cm": Float(120.5)}}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendRecord(buf[:0], &r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per record, want 0", n)
	}
}
