package cliflag

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		skip bool
		n    int
	}{
		{[]string{"a.yaml", "-skip-files"}, []string{"a.yaml"}, true, 0},
		{[]string{"-skip-files", "a.yaml", "b.yaml"}, []string{"a.yaml", "b.yaml"}, true, 0},
		{[]string{"a.yaml", "-n", "3", "b.yaml"}, []string{"a.yaml", "b.yaml"}, false, 3},
		{[]string{"a.yaml", "--", "-skip-files"}, []string{"a.yaml", "-skip-files"}, false, 0},
		{nil, nil, false, 0},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		skip := fs.Bool("skip-files", false, "")
		n := fs.Int("n", 0, "")
		pos, err := ParseInterspersed(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *skip != tc.skip || *n != tc.n {
			t.Errorf("%q: pos %q skip %v n %d err %v; want %q %v %d", tc.args, pos, *skip, *n, err, tc.pos, tc.skip, tc.n)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := ParseInterspersed(fs, []string{"a", "-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h after a file: %v, want flag.ErrHelp", err)
	}
	if _, err := ParseInterspersed(fs, []string{"a", "-bogus"}); err == nil {
		t.Error("unknown flag after a file: no error")
	}
}
