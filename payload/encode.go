package payload

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendBatch appends the version 1 JSON encoding of a batch to dst. Records
// are written in order; tags and fields in sorted key order, so equal batches
// encode to equal bytes.
func AppendBatch(dst []byte, b *Batch) ([]byte, error) {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, Version, 10)
	dst = append(dst, `,"site":`...)
	dst = appendString(dst, b.Site)
	dst = append(dst, `,"gateway":`...)
	dst = appendString(dst, b.Gateway)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, b.Seq, 10)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, b.Kind.String())
	dst = append(dst, `,"sent":`...)
	dst = appendTime(dst, b.Sent)
	dst = append(dst, `,"records":[`...)
	for i := range b.Records {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		dst, err = AppendRecord(dst, &b.Records[i])
		if err != nil {
			return dst, fmt.Errorf("record %d: %w", i, err)
		}
	}
	dst = append(dst, "]}"...)
	return dst, nil
}

// AppendRecord appends the JSON encoding of one record.
func AppendRecord(dst []byte, r *Record) ([]byte, error) {
	if r.Measurement == "" {
		return dst, errors.New("empty measurement")
	}
	if len(r.Fields) == 0 {
		return dst, fmt.Errorf("%s: no fields", r.Measurement)
	}
	dst = append(dst, `{"m":`...)
	dst = appendString(dst, r.Measurement)
	dst = append(dst, `,"t":`...)
	dst = appendTime(dst, r.Time)
	if len(r.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		var buf [8]entry[string]
		for i, e := range sortedEntries(buf[:0], r.Tags) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, e.k)
			dst = append(dst, ':')
			dst = appendString(dst, e.v)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"fields":{`...)
	var buf [8]entry[Value]
	for i, e := range sortedEntries(buf[:0], r.Fields) {
		v := e.v
		if !v.Valid() {
			return dst, fmt.Errorf("%s: field %q: value cannot be encoded (%s %v)", r.Measurement, e.k, v.typ, v.Interface())
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, e.k)
		dst = append(dst, ':')
		dst = appendValue(dst, v)
	}
	dst = append(dst, "}}"...)
	return dst, nil
}

// entry is one key and value of a map, for encoding in key order.
type entry[V any] struct {
	k string
	v V
}

// sortedEntries appends m's entries to dst (a caller's array, so that a
// record of a few tags and fields allocates nothing) in key order.
func sortedEntries[V any](dst []entry[V], m map[string]V) []entry[V] {
	for k, v := range m {
		dst = append(dst, entry[V]{k, v})
	}
	for i := 1; i < len(dst); i++ { // insertion sort: a record has few keys
		for j := i; j > 0 && dst[j].k < dst[j-1].k; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	return dst
}

func appendValue(dst []byte, v Value) []byte {
	switch v.typ {
	case TypeFloat:
		start := len(dst)
		dst = strconv.AppendFloat(dst, v.num, 'g', -1, 64)
		for _, c := range dst[start:] {
			if c == '.' || c == 'e' || c == 'E' {
				return dst
			}
		}
		return append(dst, ".0"...)
	case TypeInt:
		return strconv.AppendInt(dst, v.i, 10)
	case TypeBool:
		return strconv.AppendBool(dst, v.i != 0)
	case TypeString:
		return appendString(dst, v.s)
	}
	return append(dst, "null"...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	if plainString(s) { // names, ids and most values: copied whole
		dst = append(dst, s...)
	} else {
		dst = appendEscaped(dst, s)
	}
	return append(dst, '"')
}

// appendEscaped writes s escaped, without the quotes.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// plainString reports whether s is ASCII that appendString writes as is.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= utf8.RuneSelf, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
