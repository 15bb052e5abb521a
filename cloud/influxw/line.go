// Package influxw turns gateway records into InfluxDB line protocol and
// writes it through influxdb-client-go's blocking write API.
//
// Line protocol is built by hand (AppendLine) because it is the hot path of
// cloudd: one allocation-free append per record instead of a Point object
// per record. Every point carries the tags site and gateway, then the
// record's own tags, in sorted order; fields keep their type (float, 12i
// integers, true/false, quoted strings); the timestamp is the record's time
// in nanoseconds, the time the gateway observed the value.
//
// Writer.Write classifies failures: Unavailable (network error, 5xx, 401/403
// /404, 429: retry later, nothing is lost) versus Rejected (400, 413 never
// fixed by retrying, 422: the points themselves are bad). Callers retry the
// first kind with backoff and drop, log and count the second.
package influxw

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/payload"
)

// ErrUnwritable marks a record that line protocol cannot carry.
var ErrUnwritable = errors.New("record cannot be written as line protocol")

// CheckRecord reports whether AppendLine can encode r faithfully: tag values
// must not contain line breaks nor end in a backslash (line protocol has no
// escape for either).
func CheckRecord(r *payload.Record) error {
	for k, v := range r.Tags {
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("%s: tag %q contains a line break: %w", r.Measurement, k, ErrUnwritable)
		}
		if strings.HasSuffix(v, `\`) {
			return fmt.Errorf("%s: tag %q ends in a backslash: %w", r.Measurement, k, ErrUnwritable)
		}
	}
	for k, v := range r.Fields {
		if !v.Valid() {
			return fmt.Errorf("%s: field %q is not a finite value: %w", r.Measurement, k, ErrUnwritable)
		}
	}
	return nil
}

// Keys holds reusable scratch space for sorting tag and field keys, so that
// AppendLine allocates nothing in the steady state. The zero value is ready.
type Keys struct{ tags, fields []string }

// AppendLine appends one line of line protocol (without the trailing
// newline) for record r of gateway site/gw. r must have passed CheckRecord.
func AppendLine(dst []byte, k *Keys, site, gw string, r *payload.Record) []byte {
	dst = appendEscaped(dst, r.Measurement, false)
	k.tags = k.tags[:0]
	for name := range r.Tags {
		k.tags = append(k.tags, name)
	}
	k.tags = append(k.tags, "gateway", "site")
	sort.Strings(k.tags)
	for _, name := range k.tags {
		var v string
		switch name {
		case "site":
			v = site
		case "gateway":
			v = gw
		default:
			v = r.Tags[name]
		}
		dst = append(dst, ',')
		dst = appendEscaped(dst, name, true)
		dst = append(dst, '=')
		dst = appendEscaped(dst, v, true)
	}
	k.fields = k.fields[:0]
	for name := range r.Fields {
		k.fields = append(k.fields, name)
	}
	sort.Strings(k.fields)
	for i, name := range k.fields {
		if i == 0 {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, ',')
		}
		dst = appendEscaped(dst, name, true)
		dst = append(dst, '=')
		dst = AppendValue(dst, r.Fields[name])
	}
	dst = append(dst, ' ')
	return strconv.AppendInt(dst, r.Time.UnixNano(), 10)
}

// AppendValue appends a field value in line protocol syntax.
func AppendValue(dst []byte, v payload.Value) []byte {
	switch v.Type() {
	case payload.TypeFloat:
		return strconv.AppendFloat(dst, v.Float(), 'g', -1, 64)
	case payload.TypeInt:
		dst = strconv.AppendInt(dst, v.Int(), 10)
		return append(dst, 'i')
	case payload.TypeBool:
		return strconv.AppendBool(dst, v.Bool())
	}
	s := v.Str()
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// appendEscaped escapes commas and spaces (and, for tag keys and values
// and field keys, equals signs).
func appendEscaped(dst []byte, s string, eq bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ',' || c == ' ' || (eq && c == '=') {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}
