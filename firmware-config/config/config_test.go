package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/schema"
)

const minimal = `site: lot-a
gateway: gw-01
uplink:
  brokers: [tcp://broker.example:1883]
outbox:
  path: /var/lib/luling/outbox
buses:
  - name: rs485-1
    port: /dev/ttyUSB0
devices:
  - id: bay-001
    driver: modbus
    bus: rs485-1
    unit: 1
    profile: ultrasonic-bay
`

func mustParse(t *testing.T, src string, opts ...Option) *Config {
	t.Helper()
	c, err := Parse("gw.yaml", []byte(src), append(catalog(), opts...)...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

func parseErrors(t *testing.T, src string, opts ...Option) []string {
	t.Helper()
	_, err := Parse("gw.yaml", []byte(src), append([]Option{testRules()}, opts...)...)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *Errors, got %v", err)
	}
	var out []string
	for _, e := range errs.List {
		out = append(out, e.Error())
	}
	return out
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	want := &Config{
		File: "gw.yaml", Site: "lot-a", Gateway: "gw-01",
		Log: Log{Level: "info", Format: "text"},
		Uplink: Uplink{Brokers: []string{"tcp://broker.example:1883"}, ClientID: "lot-a-gw-01", QoS: 1,
			Keepalive: 30 * time.Second, ConnectTimeout: 10 * time.Second, MaxInflight: 32, ReconnectMax: time.Minute},
		Outbox:   Outbox{Path: "/var/lib/luling/outbox", MaxBytes: 64 << 20, CommitInterval: 10 * time.Millisecond, TelemetryWindow: time.Second, BatchMaxRecords: 500},
		Status:   Status{Listen: "127.0.0.1:9100"},
		Pipeline: Pipeline{HealthInterval: 30 * time.Second, MaxSilence: 5 * time.Minute},
		Buses: []Bus{{Name: "rs485-1", Port: "/dev/ttyUSB0", Baud: 19200, DataBits: 8, Parity: "none", StopBits: 1,
			Timeout: 200 * time.Millisecond, BackoffMax: 30 * time.Second, Line: 8}},
		Devices: []Device{{ID: "bay-001", Driver: "modbus", Bus: "rs485-1", Unit: 1, Profile: "ultrasonic-bay",
			Poll: time.Second, MaxSilence: 5 * time.Minute, Tags: map[string]string{}, Line: 11}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestDeviceMaxSilenceDefaultsToPipeline(t *testing.T) {
	c := mustParse(t, minimal+"pipeline: {max_silence: 2m}\n")
	if got := c.Devices[0].MaxSilence; got != 2*time.Minute {
		t.Errorf("device max_silence = %v, want pipeline's 2m", got)
	}
}

func TestBusTurnaround(t *testing.T) {
	src := strings.Replace(minimal, "    port: /dev/ttyUSB0\n", "    port: /dev/ttyUSB0\n    turnaround: 500us\n", 1)
	c := mustParse(t, src)
	if got := c.Buses[0].Turnaround; got != 500*time.Microsecond {
		t.Errorf("turnaround = %v, want 500µs", got)
	}
	if !strings.Contains(c.String(), "turnaround=500µs") {
		t.Errorf("String does not show the turnaround:\n%s", c)
	}
	if c := mustParse(t, minimal); c.Buses[0].Turnaround != 0 || !strings.Contains(c.String(), "turnaround=auto") {
		t.Errorf("turnaround left out: %v, want 0 (the drivers' choice)\n%s", c.Buses[0].Turnaround, c)
	}
}

func TestStatusListenEmptyDisables(t *testing.T) {
	if c := mustParse(t, minimal+"status: {listen: \"\"}\n"); c.Status.Listen != "" {
		t.Errorf("listen = %q, want disabled", c.Status.Listen)
	}
	if c := mustParse(t, minimal+"status: {listen: \":9200\"}\n"); c.Status.Listen != ":9200" {
		t.Errorf("listen = %q", c.Status.Listen)
	}
}

func TestExpansion(t *testing.T) {
	c, err := Load("../examples/large-lot.yaml", append(catalog(), SkipFileChecks())...)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Devices) != 64 {
		t.Fatalf("%d devices, want 64", len(c.Devices))
	}
	for i, d := range c.Devices {
		n := i + 1
		wantID := fmt.Sprintf("bay-%03d", n)
		wantBus, wantUnit, wantLine, wantZone := "rs485-1", n, 49, "north"
		if n > 32 {
			wantBus, wantUnit, wantLine, wantZone = "rs485-2", n-32, 60, "south"
		}
		if d.ID != wantID || d.Bus != wantBus || d.Unit != wantUnit || d.Line != wantLine {
			t.Errorf("device %d = %s on %s unit %d line %d; want %s on %s unit %d line %d",
				i, d.ID, d.Bus, d.Unit, d.Line, wantID, wantBus, wantUnit, wantLine)
		}
		wantTags := map[string]string{"lot": "riverside", "zone": wantZone, "bay": fmt.Sprintf("%03d", n)}
		if !maps.Equal(d.Tags, wantTags) {
			t.Errorf("%s tags = %v, want %v", d.ID, d.Tags, wantTags)
		}
	}
	north, south := c.Devices[0], c.Devices[40]
	if north.Poll != time.Second || north.MaxSilence != 10*time.Minute || north.Deadband["distance_cm"] != 5 {
		t.Errorf("north: %+v", north)
	}
	if south.Poll != 2*time.Second || south.MaxSilence != 15*time.Minute || south.Profile != "geomagnetic-bay" || south.Deadband != nil {
		t.Errorf("south: %+v", south)
	}
	// Expanded devices do not share maps.
	c.Devices[0].Tags["lot"] = "x"
	c.Devices[0].Deadband["distance_cm"] = 99
	if c.Devices[1].Tags["lot"] != "riverside" || c.Devices[1].Deadband["distance_cm"] != 5 {
		t.Error("expanded devices share their maps")
	}
	if c.Uplink.TLS.Cert != "/etc/luling/tls/gw-02.pem" || c.Outbox.MaxBytes != 256<<20 || c.Log.Format != "json" {
		t.Errorf("uplink/outbox: %+v %+v", c.Uplink.TLS, c.Outbox)
	}
}

func TestExamplesValid(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		c, err := Load(f, append(catalog(), SkipFileChecks())...)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		t.Logf("%s: %s", f, c.Summary())
	}
	c, _ := Load("../examples/small-lot.yaml", append(catalog(), SkipFileChecks())...)
	if c == nil || len(c.Devices) != 8 || len(c.Buses) != 1 || c.Devices[7].ID != "bay-08" || c.Devices[7].Unit != 8 {
		t.Errorf("small lot: %+v", c)
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		want string
		err  string
	}{
		{"bay-{n}", 7, "bay-7", ""},
		{"bay-{n:03}", 7, "bay-007", ""},
		{"bay-{n:03}", 1234, "bay-1234", ""},
		{"{n-32}", 40, "8", ""},
		{"{n+100:04}", 5, "0105", ""},
		{"{n-10:03}", 5, "-005", ""},
		{"a{n}b{n:02}", 3, "a3b03", ""},
		{"plain", 3, "plain", ""},
		{"bay-{m}", 1, "", `bad placeholder "{m}"`},
		{"bay-{n:3}", 1, "", `bad placeholder "{n:3}"`},
		{"bay-{n", 1, "", `unclosed placeholder "{n"`},
		{"bay-n}", 1, "", `unmatched } in "bay-n}"`},
	} {
		got, err := expand(tc.in, tc.n)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("expand(%q) error = %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q, %d) = %q, %v; want %q", tc.in, tc.n, got, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"64MiB", 64 << 20, true},
		{"512KiB", 512 << 10, true},
		{"1GB", 1_000_000_000, true},
		{"1.5GiB", 3 << 29, true},
		{"2 mib", 2 << 20, true},
		{"10kb", 10_000, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"5 parsecs", 0, false},
		{"99999999999TiB", 0, false},
		{"1.2.3MB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := FormatSize(64 << 20); s != "64MiB" {
		t.Errorf("FormatSize = %s", s)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "  brokers:", "  username: gw\n  password: hunter2-pass\n  brokers:", 1))
	if c.Uplink.Password.Reveal() != "hunter2-pass" {
		t.Fatalf("password = %q", c.Uplink.Password.Reveal())
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "uplink", c.Uplink, "password", c.Uplink.Password, "cfg", c)
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprintf("%v %+v %#v", *c, c.Uplink, c.Uplink),
		fmt.Sprintf("%v %s %q %x", c.Uplink.Password, c.Uplink.Password, c.Uplink.Password, c.Uplink.Password),
		c.String(), c.Redacted().String(), fmt.Sprintf("%+v", c.Redacted()),
		logged.String(),
	} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("password printed: %s", s)
		}
	}
	if c.Redacted().Uplink.Password.Reveal() == "hunter2-pass" {
		t.Error("Redacted keeps the password")
	}
	if !strings.Contains(c.String(), "password=[redacted]") {
		t.Errorf("String does not show that a password is set: %s", c.String())
	}
}

func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("mqtt.pass", "s3cret\n")
	write("ca.pem", "x")
	cfgText := strings.Replace(minimal, "  brokers: [tcp://broker.example:1883]",
		"  brokers: [ssl://broker.example:8883]\n  username: gw\n  password_file: mqtt.pass\n  tls: {ca: ca.pem, cert: client.pem, key: client.key}", 1)
	write("gw.yaml", cfgText)
	_, err := Load(filepath.Join(dir, "gw.yaml"), catalog()[:2]...)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want errors for the missing client cert, got %v", err)
	}
	var got []string
	for _, e := range errs.List {
		got = append(got, fmt.Sprintf("%d:%d %s %s", e.Line, e.Col, e.Path, e.Msg))
	}
	want := []string{
		fmt.Sprintf("7:27 uplink.tls.cert cannot use %s/client.pem: no such file or directory", dir),
		fmt.Sprintf("7:44 uplink.tls.key cannot use %s/client.key: no such file or directory", dir),
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	write("client.pem", "x")
	write("client.key", "x")
	c, err := Load(filepath.Join(dir, "gw.yaml"), catalog()[:2]...)
	if err != nil {
		t.Fatal(err)
	}
	if c.Uplink.Password.Reveal() != "s3cret" || c.Uplink.PasswordFile != filepath.Join(dir, "mqtt.pass") {
		t.Errorf("password from file = %q (%s)", c.Uplink.Password.Reveal(), c.Uplink.PasswordFile)
	}
	if c.Uplink.TLS.CA != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca = %s, want it resolved against the config's folder", c.Uplink.TLS.CA)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestProfilesDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "custom-bay.yaml"), []byte("name: custom-bay\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(minimal, "ultrasonic-bay", "custom-bay", 1) + "profiles_dir: " + dir + "\n"
	opts := catalog()[:2]
	if _, err := Parse("gw.yaml", []byte(src), opts...); err != nil {
		t.Errorf("profile from profiles_dir: %v", err)
	}
	got := parseErrors(t, src, append(opts, ProfilesInDir(func(string) ([]string, error) {
		return nil, errors.New("custom-bay.yaml:3: unknown type")
	}))...)
	want := []string{
		"gw.yaml:15:14: devices[0].profile: unknown profile \"custom-bay\" (known profiles: geomagnetic-bay, ultrasonic-bay)",
		"gw.yaml:16:15: profiles_dir: cannot load profiles from " + dir + ": custom-bay.yaml:3: unknown type (fix the profiles in that folder)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = parseErrors(t, minimal+"profiles_dir: "+filepath.Join(dir, "custom-bay.yaml")+"\n", opts...)
	if len(got) != 1 || !strings.Contains(got[0], "gw.yaml:16:15: profiles_dir: ") || !strings.Contains(got[0], "is not a folder") {
		t.Errorf("profiles_dir naming a file: %q", got)
	}
}

func TestMergeKeysAndAnchors(t *testing.T) {
	src := `site: lot-a
gateway: gw-01
uplink: {brokers: [tcp://broker.example:1883]}
outbox: {path: /data/outbox}
buses: [{name: rs485-1, port: /dev/ttyUSB0}]
devices:
  - &bay
    id: bay-001
    driver: modbus
    bus: rs485-1
    unit: 1
    profile: ultrasonic-bay
    poll: 2s
  - <<: *bay
    id: bay-002
    unit: 2
`
	c := mustParse(t, src)
	if len(c.Devices) != 2 || c.Devices[1].ID != "bay-002" || c.Devices[1].Unit != 2 || c.Devices[1].Poll != 2*time.Second || c.Devices[1].Profile != "ultrasonic-bay" {
		t.Errorf("merged device: %+v", c.Devices)
	}
}

func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"site: a\nuplink: [x\noutbox: y\n", "gw.yaml:2: yaml syntax: did not find expected ',' or ']'"},
		{"site: a\ngateway: b\n  c: d\n", "gw.yaml:3: yaml syntax: mapping values are not allowed in this context"},
		{"- a\nb: c\n", "gw.yaml:2: yaml syntax: did not find expected '-' indicator"},
		{"site: a\n\tgateway: b\n", "gw.yaml:2: yaml syntax: found a tab character that violates indentation"},
		{"site: a\ngateway: b\nlog: *logcfg\n", "gw.yaml:3:6: yaml syntax: unknown anchor 'logcfg' referenced"},
	} {
		got := parseErrors(t, tc.src)
		if len(got) != 1 || !strings.HasPrefix(got[0], tc.want+" (") {
			t.Errorf("%q:\n got %q\nwant %q", tc.src, got, tc.want)
		}
	}
}

func TestAnyDriverWithoutCatalog(t *testing.T) {
	src := strings.Replace(strings.Replace(minimal, "driver: modbus", "driver: acme", 1), "ultrasonic-bay", "whatever", 1)
	if _, err := Parse("gw.yaml", []byte(src)); err != nil {
		t.Errorf("without KnownDrivers/KnownProfiles any name is accepted: %v", err)
	}
	if got := parseErrors(t, src, KnownDrivers("modbus")); len(got) != 1 || !strings.Contains(got[0], `unknown driver "acme"`) {
		t.Errorf("with KnownDrivers: %q", got)
	}
}

func TestDriverRules(t *testing.T) {
	src := strings.Replace(minimal, "unit: 1", "unit: 0", 1)
	if got := parseErrors(t, src); len(got) != 1 || !strings.Contains(got[0], "unit 0 is out of range (driver modbus accepts units 1..247)") {
		t.Errorf("built-in modbus rule: %q", got)
	}
	if _, err := Parse("gw.yaml", []byte(src), testRules(), DriverRules(map[string]DriverRule{"modbus": {Bus: true, UnitMin: 0, UnitMax: 255}})); err != nil {
		t.Errorf("DriverRules replaces an earlier rule: %v", err)
	}
}

func TestTooManyDevices(t *testing.T) {
	var b strings.Builder
	b.WriteString("site: a\ngateway: b\nuplink: {brokers: [tcp://h:1]}\noutbox: {path: /o}\ndevices:\n")
	for i := 0; i < 11; i++ {
		fmt.Fprintf(&b, "  - {id: \"d%d-{n}\", driver: x, repeat: {from: 1, to: 1000}}\n", i)
	}
	got := parseErrors(t, b.String())
	if len(got) != 1 || !strings.Contains(got[0], "gw.yaml:16:5: devices[10]: more than 10000 devices in one file") {
		t.Errorf("got %q", got)
	}
}

func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 {x: 1}\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("<<: *a8\n")
	start := time.Now()
	got := parseErrors(t, b.String())
	if len(got) > 40 {
		t.Errorf("%d errors, want the merge bomb stopped early", len(got))
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "more than 1000 merges") }) {
		t.Errorf("no merge limit error in %q", got)
	}
	t.Logf("%d errors in %v", len(got), time.Since(start))
}

func TestCatalogFunctions(t *testing.T) {
	knownDriver := func(name string) bool { return name == "modbus" }
	knownProfile := func(name string) bool { return strings.HasSuffix(name, "-bay") }
	if _, err := Parse("gw.yaml", []byte(minimal), KnownDrivers(knownDriver), KnownProfiles(knownProfile)); err != nil {
		t.Errorf("functions accepting the names: %v", err)
	}
	src := strings.Replace(strings.Replace(minimal, "driver: modbus", "driver: modbsu", 1), "ultrasonic-bay", "ultrasonic", 1)
	got := parseErrors(t, src, KnownDrivers(knownDriver), KnownProfiles(knownProfile))
	want := []string{
		`gw.yaml:12:13: devices[0].driver: unknown driver "modbsu"`,
		`gw.yaml:15:14: devices[0].profile: unknown profile "ultrasonic"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Names and functions together: a name is known when either knows it.
	got = parseErrors(t, src, KnownDrivers(knownDriver), KnownDrivers("sunspec", "modbus"), KnownProfiles(knownProfile))
	if len(got) != 2 || !strings.HasSuffix(got[0], `(did you mean modbus?)`) {
		t.Errorf("with names, hints: %q", got)
	}
}

func TestSharedPortThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	tty := filepath.Join(dir, "ttyUSB0")
	link := filepath.Join(dir, "by-id-usb-FTDI")
	if err := os.WriteFile(tty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tty, link); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(minimal, "    port: /dev/ttyUSB0\n",
		"    port: "+tty+"\n  - name: rs485-2\n    port: "+link+"\n", 1)
	got := parseErrors(t, src, catalog()[:2]...)
	want := []string{"gw.yaml:11:11: buses[1].port: port " + link + " is already used by the bus at line 9 (one port carries one bus; put all its devices on one bus entry)"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestDriverOptionsSchema: a driver that describes its options gets them
// checked with their places, in a repeat block once per entry; a driver
// without a schema gets them as written.
func TestDriverOptionsSchema(t *testing.T) {
	rules := DriverRules(map[string]DriverRule{
		"modbus": {Bus: true, UnitMin: 1, UnitMax: 247, Profile: true,
			Options: schema.Schema{{Key: "read_only", Kind: schema.Bool}}},
	})
	src := minimal + "    options: {read_only: true}\n"
	if c := mustParse(t, src, rules); c.Devices[0].Options["read_only"] != true {
		t.Errorf("options = %v", c.Devices[0].Options)
	}
	src = minimal[:strings.Index(minimal, "  - id: bay-001")] + `  - id: bay-{n:03}
    repeat: {from: 1, to: 3}
    driver: modbus
    bus: rs485-1
    unit: "{n}"
    profile: ultrasonic-bay
    options: {read_ony: true, }
`
	got := parseErrors(t, src, rules)
	want := `gw.yaml:17:15: devices[0].options.read_ony: unknown key "read_ony" (did you mean read_only?)`
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q\nwant %q (once for the whole repeat block)", got, want)
	}
	// No schema (a driver that does not describe itself): taken as written.
	if c := mustParse(t, minimal+"    options: {anything: 1}\n"); c.Devices[0].Options["anything"] != 1 {
		t.Errorf("options without a schema = %v", c.Devices[0].Options)
	}
}

func TestTelemetryWindow(t *testing.T) {
	for _, tt := range []struct {
		set  string
		want time.Duration
	}{{"", time.Second}, {", telemetry_window: 0s", 0}, {", telemetry_window: 250ms", 250 * time.Millisecond}} {
		src := strings.Replace(minimal, "outbox:\n  path: /var/lib/luling/outbox\n",
			"outbox: {path: /var/lib/luling/outbox"+tt.set+"}\n", 1)
		if src == minimal {
			t.Fatal("minimal config changed: update the test")
		}
		if got := mustParse(t, src).Outbox.TelemetryWindow; got != tt.want {
			t.Errorf("%q: telemetry window %v, want %v", tt.set, got, tt.want)
		}
	}
}
