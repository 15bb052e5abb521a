package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// FuzzParse checks that no input makes the loader panic, that every error
// carries the file and a line, and that a config it accepts keeps the
// invariants the gateway relies on.
// The rules of site, gateway and device ids, as regexps: an oracle apart
// from the loader's byte comparisons (payload.ValidID, ValidDeviceID).
var (
	nameRe     = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	deviceIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
)

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/errors/*.yaml")
	examples, _ := filepath.Glob("../examples/*.yaml")
	for _, p := range append(seeds, examples...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("<<: {site: a}\n"))
	f.Add([]byte("devices: [{id: \"{n:099}\", repeat: {from: 0, to: 999}, unit: \"{n-999999999:099}\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, catalog()...)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if len(errs.List) == 0 {
				t.Fatal("empty *Errors")
			}
			for i, e := range errs.List {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Col < 0 || e.Msg == "" {
					t.Fatalf("error without a place or message: %+v", e)
				}
				if i > 0 && e.Line < errs.List[i-1].Line {
					t.Fatalf("errors not sorted: %v", errs)
				}
			}
			return
		}
		if !nameRe.MatchString(c.Site) || !nameRe.MatchString(c.Gateway) || len(c.Uplink.Brokers) == 0 || c.Outbox.Path == "" || c.Uplink.QoS != 1 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		ids := map[string]bool{}
		units := map[[2]any]bool{}
		for _, d := range c.Devices {
			if !deviceIDRe.MatchString(d.ID) || ids[d.ID] || d.Line < 1 {
				t.Fatalf("bad or duplicate device %+v", d)
			}
			ids[d.ID] = true
			if d.Bus != "" {
				k := [2]any{d.Bus, d.Unit}
				if units[k] {
					t.Fatalf("duplicate unit %d on %s", d.Unit, d.Bus)
				}
				units[k] = true
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64MiB", "512KiB", "1GB", "1048576", "1.5GiB", "2 mib", "", "MiB", "9223372036854775807", "99999999999TiB", "1e3", "-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			if v != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, v, err)
			}
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, v)
		}
		if back, err := ParseSize(FormatSize(v)); err != nil || back != v {
			t.Fatalf("FormatSize(%d) = %q reads back as %d, %v", v, FormatSize(v), back, err)
		}
	})
}
