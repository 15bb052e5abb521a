package simgpio

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"op":"level","line":"a","level":"low"}`, "t 0"},
		{`{"op":"level","line":"a","level":"up","t":5}`, `level "up"`},
		{`{"op":"out","line":"","level":"low","t":5}`, "line name"},
		{`{"op":"jump"}`, `unknown op "jump"`},
		{`{"op":"hello","v":2}`, "version 2"},
		{`{"op":"hello","v":1,"lines":[{"line":"a","level":"low"},{"line":"a","level":"low"}]}`, "twice"},
		{`{"op":"level","line":"a b","level":"low","t":5}`, "without spaces"},
		{`{"op":"level","line":"a","level":"low","t":5,"x":1}`, "unknown field"},
		{`{"op":"level","line":"a","level":"low","t":5}{}`, "more than one"},
		{`[`, "unexpected EOF"},
	} {
		_, err := Decode([]byte(c.in))
		if !errors.Is(err, ErrMessage) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("Decode(%s) = %v: want an error with %q", c.in, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"op":"hello","v":1,"lines":[{"line":"gpiochip0:17","level":"high"},{"line":"GPIO5","level":"low"}]}`,
		`{"op":"level","line":"gpiochip0:22","level":"low","t":1733330000123456789}`,
		`{"op":"out","line":"strike","level":"high","t":1}`,
		`{"op":"hello","v":1}`, `{}`, `null`, `{"op":"level","line":"\u0000","level":"low","t":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMessage) {
				t.Fatalf("error does not wrap ErrMessage: %v", err)
			}
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %+v: %v", m, err)
		}
		again, err := Decode(bytes.TrimSuffix(enc, []byte("\n")))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %+v → %s → %+v, %v", m, enc, again, err)
		}
	})
}
