package config

import (
	"bytes"
	"errors"
	"testing"
)

// TestPlaceholdersNamesEachAtItsLine: every placeholder is reported at the
// line and column of its value; a filled-in config passes.
func TestPlaceholdersNamesEachAtItsLine(t *testing.T) {
	src := `site: change-me
gateway: gw-change-me
uplink:
  brokers:
    - tcp://mqtt.city.test:1883
    - ssl://broker.EXAMPLE.org:8883
  username: change-me/gw
outbox: {path: /var/lib/luling/outbox}
`
	cfg, err := Parse("gw.yaml", []byte(src), SkipFileChecks())
	if err != nil {
		t.Fatal(err)
	}
	err = Placeholders(cfg, []byte(src), SkipFileChecks())
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	want := []string{
		`gw.yaml:1:7: site: "change-me" is the example's placeholder (use the site name agreed with the platform, or install a provisioning bundle)`,
		`gw.yaml:2:10: gateway: "gw-change-me" is the example's placeholder`,
		`gw.yaml:6:7: uplink.brokers: ssl://broker.EXAMPLE.org:8883 is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)`,
		`gw.yaml:7:13: uplink.username: "change-me/gw" is the example's placeholder ({site}/{gateway})`,
	}
	if len(errs.List) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs.List), len(want), err)
	}
	for i, e := range errs.List {
		if e.Error() != want[i] {
			t.Errorf("error %d:\n got %s\nwant %s", i, e.Error(), want[i])
		}
	}
	good := `site: city-lot
gateway: gw-01
uplink: {brokers: [tcp://mqtt.city.test:1883], username: city-lot/gw-01, password_file: /nonexistent/pass}
outbox: {path: /var/lib/luling/outbox}
`
	cfg, err = Parse("gw.yaml", []byte(good), SkipFileChecks())
	if err != nil {
		t.Fatal(err)
	}
	if err := Placeholders(cfg, []byte(good), SkipFileChecks()); err != nil {
		t.Errorf("filled-in config refused: %v", err)
	}
	// Without SkipFileChecks an unread (empty) password file is refused.
	if err := Placeholders(cfg, []byte(good)); err == nil {
		t.Error("empty password_file passed")
	}
}

// FuzzPlaceholders: any file the loader accepts is checked without a
// panic, and every placeholder found sits at a line of the file.
func FuzzPlaceholders(f *testing.F) {
	f.Add([]byte("site: change-me\ngateway: gw-01\nuplink: {brokers: [tcp://broker.example.net:1883], username: change-me/gw-01}\noutbox: {path: /x}\n"))
	f.Add([]byte("base: &b {brokers: [tcp://a.example:1]}\nsite: s\ngateway: g\nuplink:\n  <<: *b\noutbox: {path: /x}\n"))
	f.Add([]byte("site: s\ngateway: gw-change-me\nuplink: {brokers: ['tcp://[::1]:1', tcp://x.example.org:1]}\noutbox: {path: /x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("gw.yaml", data, SkipFileChecks())
		if err != nil {
			return
		}
		err = Placeholders(cfg, data, SkipFileChecks())
		if err == nil {
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) {
			t.Fatalf("got %T, want *Errors", err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range errs.List {
			if e.Line < 1 || e.Line > lines || e.Path == "" {
				t.Errorf("error at line %d of %d, path %q: %v", e.Line, lines, e.Path, e)
			}
		}
	})
}
