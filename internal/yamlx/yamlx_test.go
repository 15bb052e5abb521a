package yamlx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/schema"
)

func decode(t *testing.T, src string) (*Decoder, *Map) {
	t.Helper()
	d := &Decoder{File: "t.yaml"}
	root, ok := d.Parse([]byte(src))
	if !ok {
		t.Fatalf("parse: %v", d.Err())
	}
	return d, d.Map(root, "", []string{"name", "poll", "count", "ratio", "on", "mode", "items"})
}

func TestMapReportsEveryMistakeWithItsPlace(t *testing.T) {
	d, m := decode(t, "name: a\npol: 5s\ncount: \"7\"\nratio: .nan\non: yes please\nmode: fas\nname: b\n")
	m.Get("name")
	d.Int(m.Get("count"), "count", 0, 10)
	d.Number(m.Get("ratio"), "ratio")
	d.Bool(m.Get("on"), "on")
	d.OneOf(m.Get("mode"), "mode", []string{"fast", "slow"})
	want := []string{
		`t.yaml:2:1: pol: unknown key "pol" (did you mean poll?)`,
		`t.yaml:3:8: count: expected an integer, got string "7" (write the number without quotes)`,
		`t.yaml:4:8: ratio: expected a finite number, got number .nan`,
		`t.yaml:5:5: on: expected a boolean, got string "yes please" (true or false)`,
		`t.yaml:6:7: mode: "fas" is not allowed (did you mean fast?)`,
		`t.yaml:7:1: name: key "name" is set twice; first at line 1`,
	}
	err := d.Err()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Err() = %v, want *Errors", err)
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestDurationAndMerge(t *testing.T) {
	d, m := decode(t, "items: &base {poll: 2s}\npoll: 90\n<<: *base\n")
	if _, ok := d.Duration(m.Get("poll"), "poll", time.Second, time.Hour); ok {
		t.Fatal("90 accepted as a duration")
	}
	if got := d.Errs[0].Hint; got != "add a unit: 90ms or 90s" {
		t.Errorf("hint = %q", got)
	}
	d2, m2 := decode(t, "items: &base {count: 2}\n<<: *base\ncount: 3\n")
	if v, ok := d2.Int(m2.Get("count"), "count", 0, 9); !ok || v != 3 {
		t.Errorf("count = %d, %v: the written key must win over the merged one (%v)", v, ok, d2.Err())
	}
}

func TestParseSyntaxErrorLine(t *testing.T) {
	d := &Decoder{File: "bad.yaml"}
	if _, ok := d.Parse([]byte("a: 1\nb: [1, 2\nc: 3\n")); ok {
		t.Fatal("parsed")
	}
	if len(d.Errs) != 1 || d.Errs[0].Line < 2 || !strings.Contains(d.Errs[0].Msg, "yaml syntax") {
		t.Errorf("errs = %v", d.Errs)
	}
}

func TestSortedDropsRepeats(t *testing.T) {
	list := Sorted([]Error{{Line: 3, Col: 1, Path: "b"}, {Line: 1, Col: 2, Path: "a"}, {Line: 3, Col: 1, Path: "b"}})
	if len(list) != 2 || list[0].Line != 1 {
		t.Errorf("sorted = %v", list)
	}
}

func TestSuggest(t *testing.T) {
	for _, c := range []struct{ s, want string }{
		{"baudrate", "known keys: baud, parity"},
		{"bud", "did you mean baud?"},
		{"PARITY", "did you mean parity?"},
	} {
		if got := Suggest(c.s, []string{"baud", "parity"}, "known keys"); got != c.want {
			t.Errorf("Suggest(%q) = %q, want %q", c.s, got, c.want)
		}
	}
}

func FuzzDecoder(f *testing.F) {
	for _, s := range []string{"name: a\n", "a: &x [*x]\n", "<<: [*a]\n", "items: {<<: {<<: {}}}\n", "- 1\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &Decoder{File: "f.yaml"}
		root, ok := d.Parse(data)
		if !ok {
			if len(d.Errs) != 1 || d.Errs[0].Line < 1 {
				t.Fatalf("syntax error without a place: %v", d.Errs)
			}
			return
		}
		m := d.Map(root, "", nil)
		if m == nil {
			return
		}
		for _, k := range m.Ordered() {
			d.Str(m.Get(k), k)
			d.Int(m.Get(k), k, -5, 5)
			d.Duration(m.Get(k), k, 0, time.Hour)
			d.Map(m.Get(k), k, []string{"x"})
		}
		for _, e := range d.Errs {
			if e.Line < 1 || e.File != "f.yaml" {
				t.Fatalf("error without a place: %+v", e)
			}
		}
	})
}

func TestCheckSchema(t *testing.T) {
	s := schema.Schema{
		{Key: "pin", Kind: schema.String, Required: true, Doc: "a line name"},
		{Key: "dir", Kind: schema.String, OneOf: []string{"in", "out"}},
		{Key: "n", Kind: schema.Int, Min: 1, Max: 3},
		{Key: "every", Kind: schema.Duration},
		{Key: "hex", Kind: schema.String, Valid: func(s string) error {
			if len(s) != 2 {
				return errors.New("want 2 digits")
			}
			return nil
		}},
		{Key: "more", Kind: schema.Mapping},
	}
	d := &Decoder{File: "o.yaml"}
	root, _ := d.Parse([]byte("dir: up\nn: 4\nevery: 0s\nhex: abc\nmore: [1]\nextra: 1\n"))
	d.Check(root, "options", s)
	want := []string{
		"o.yaml:1:1: options.pin: required key is missing (a line name)",
		`o.yaml:1:6: options.dir: "up" is not allowed (one of: in, out)`,
		"o.yaml:2:4: options.n: 4 is out of range 1..3",
		"o.yaml:3:8: options.every: 0s is out of range 1ms..24h",
		"o.yaml:4:6: options.hex: want 2 digits",
		"o.yaml:5:7: options.more: expected a mapping of keys, got a list",
		`o.yaml:6:1: options.extra: unknown key "extra" (known keys: pin, dir, n, every, hex, more)`,
	}
	if got := d.Err().Error(); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	d = &Decoder{File: "o.yaml"}
	root, _ = d.Parse([]byte("anything: 1\n"))
	d.Check(root, "options", schema.Schema{})
	if len(d.Errs) != 1 || d.Errs[0].Hint != "" {
		t.Errorf("an empty schema accepts no key: %v", d.Errs)
	}
}
